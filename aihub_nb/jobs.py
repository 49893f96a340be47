"""Jobs: a record of each piece of work, its log, thread locks, and background runs.

    >>> with JobRun(store, "chat turn: demo", "chat.turn") as job:
    ...     job.log("sending 3 messages")
    >>> store.get("Jobs", job.id)["status"]
    'completed'

A job goes pending -> running -> completed / failed / interrupted (Ctrl-C, Stop, a generator
closed early, a lock freed by hand: not an error); what it logs lands in its TextLog. A
MessageThread is locked by setting its `lockingJob` to the running job's id, so a second turn
on the same thread is refused instead of interleaving. Taking the lock and starting the job are
one transaction (`JobRun.start(lock=thread_id)`): no failure, Ctrl-C or kill can leave a thread
locked by a job that never started. A lock whose job has ended, whose process is gone, or that
never started, is recovered by the next turn; `unlock_thread` frees one by hand (refusing while
a live process holds it). A job records its process from the moment it is created, so a pending
job whose process died is marked failed when the store is next opened by a hub.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .errors import ThreadBusyError
from .redact import redact
from .store import now_iso

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "BackgroundJob",
    "JobRun",
    "check_unlocked",
    "fail_orphaned_jobs",
    "fail_stale_pending_jobs",
    "lock_thread",
    "process_start",
    "release_thread",
    "run_in_background",
    "unlock_thread",
]

ORPHANED = "its process ended before the job finished"
NEVER_STARTED = "its process ended before the job started"
# A legacy lock (written before lock and start were one transaction) held by a job that never
# started and names no process is taken as stale once it is this old.
_PENDING_GRACE_S = 10.0

ENDED = ("completed", "failed", "interrupted")  # a job in one of these states has finished

_ACTIVE: set[str] = set()  # ids of jobs running in this process
_ACTIVE_LOCK = threading.Lock()


def process_start(pid: int) -> str | None:
    """When the process started (psutil's create_time, in seconds since the epoch, as text); with
    the pid it names one process, even after the pid is reused. None where unknown."""
    import psutil  # here, not above: importing the hub stays cheap

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.Error, OSError, ValueError):
        return None


_PID = os.getpid()


@functools.cache
def _own_start() -> str | None:
    return process_start(_PID)


def _process_alive(pid: int | None, start: str | None) -> bool:
    """Whether the process `pid` that started at `start` still runs (a reused pid does not count)."""
    import psutil

    if not pid:
        return False
    try:
        if not psutil.pid_exists(pid):
            return False
    except (psutil.Error, OSError, ValueError):  # a pid out of range
        return False
    return start is None or process_start(pid) in (None, start)


class JobRun:
    """One job: created pending, running inside `with`, completed, failed or interrupted on the way out."""

    def __init__(self, store: Store, name: str, type: str, *, references: dict[str, str] | None = None) -> None:
        self.store = store
        log = store.create("TextLog", text="")
        self.text_log_id = log["id"]
        row = store.create(
            "Jobs", name=name, type=type, status="pending", textLogId=log["id"], references=references or {},
            pid=_PID, processStart=_own_start(),
        )
        self.id: str = row["id"]
        self.status = "pending"
        self.error: str | None = None

    def start(self, *, lock: str | None = None, label: str = "This thread") -> JobRun:
        """Mark the job running; with `lock`, take that MessageThread's lock in the same
        transaction (ThreadBusyError, and nothing changed, while a live job holds it)."""
        with _ACTIVE_LOCK:
            _ACTIVE.add(self.id)
        try:
            with self.store.transaction() as conn:
                if lock is not None:
                    _take_lock(self.store, conn, lock, self.id, label)
                self.store.set("Jobs", self.id, status="running", pid=_PID, processStart=_own_start(), startedAt=now_iso())
        except BaseException:
            with _ACTIVE_LOCK:
                _ACTIVE.discard(self.id)
            raise
        self.status = "running"
        return self

    def log(self, text: str) -> None:
        """Append a line to the job's TextLog (known secrets redacted)."""
        text = redact(text)
        self.store.append_text("TextLog", self.text_log_id, "text", text if text.endswith("\n") else text + "\n")

    def finish(self, error: BaseException | str | None = None) -> None:
        if self.status in ENDED:
            return
        if error is None:
            self.status = "completed"
        else:
            self.status = "interrupted" if isinstance(error, (KeyboardInterrupt, GeneratorExit)) else "failed"
            self.error = redact(_one_line(error))
            if isinstance(error, BaseException):
                self.log("".join(traceback.format_exception(error)).rstrip())
            else:
                self.log(self.error)
        self.store.set("Jobs", self.id, status=self.status, finishedAt=now_iso(), error=self.error)
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self.id)

    def __enter__(self) -> JobRun:
        return self.start() if self.status == "pending" else self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(exc)


def _one_line(error: BaseException | str) -> str:
    if isinstance(error, (KeyboardInterrupt, GeneratorExit)):
        return "interrupted by the user"
    if isinstance(error, BaseException):
        text = str(error) or type(error).__name__
        return f"{type(error).__name__}: {text}".splitlines()[0]
    return str(error).splitlines()[0] if str(error) else "failed"


# ---------------------------------------------------------------- thread locks


def _lock_is_stale(store: Store, job_id: str) -> bool:
    job = store.first("Jobs", id=job_id)
    if job is None or job["status"] in ENDED:
        return True
    if job["pid"] == _PID and job["processStart"] == _own_start():
        with _ACTIVE_LOCK:
            return job_id not in _ACTIVE
    if job["status"] == "pending" and not job["pid"]:  # locked by a job that never started
        return _age_s(job["updatedAt"]) > _PENDING_GRACE_S
    return not _process_alive(job["pid"], job["processStart"])


def _age_s(stamp: str | None) -> float:
    from datetime import datetime

    try:
        return time.time() - datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")


def fail_orphaned_jobs(store: Store) -> int:
    """Mark failed the running jobs whose process is gone (a crashed or killed kernel); return
    how many. Their thread locks are then recovered by the next turn."""
    rows = store.query('SELECT id, pid, processStart FROM "Jobs" WHERE status = \'running\'')
    orphans = [r["id"] for r in rows if not (r["pid"] == _PID and r["processStart"] == _own_start()) and not _process_alive(r["pid"], r["processStart"])]
    for job_id in orphans:
        store.set("Jobs", job_id, status="failed", error=ORPHANED, finishedAt=now_iso())
    return len(orphans)


def fail_stale_pending_jobs(store: Store) -> int:
    """Mark failed the pending jobs that will never start: their process is gone, or (written
    before jobs named their process) they have waited past a short grace. Return how many."""
    rows = store.query('SELECT id, pid, processStart, updatedAt FROM "Jobs" WHERE status = \'pending\'')
    stale = [
        r["id"] for r in rows
        if not (r["pid"] == _PID and r["processStart"] == _own_start())
        and (not _process_alive(r["pid"], r["processStart"]) if r["pid"] else _age_s(r["updatedAt"]) > _PENDING_GRACE_S)
    ]
    for job_id in stale:
        store.set("Jobs", job_id, status="failed", error=NEVER_STARTED, finishedAt=now_iso())
    return len(stale)


def _take_lock(store: Store, conn, thread_id: str, job_id: str, label: str) -> None:
    row = conn.execute('SELECT lockingJob FROM "MessageThread" WHERE id = ?', (thread_id,)).fetchone()
    holder = row[0] if row else None
    if holder and holder != job_id and not _lock_is_stale(store, holder):
        raise ThreadBusyError(f"{label} is busy: {_holder_words(store, holder)}; wait for it to finish or interrupt it.")
    conn.execute('UPDATE "MessageThread" SET lockingJob = ?, updatedAt = ? WHERE id = ?', (job_id, now_iso(), thread_id))


def _holder_words(store: Store, job_id: str) -> str:
    """What holds a lock, in words: "a chat turn started 14:03:07 UTC (12 s ago) is still
    answering in this kernel" (or "in another process, pid 4242")."""
    job = store.first("Jobs", id=job_id) or {}
    kind = {"chat.turn": "a chat turn", "background": "a background job"}.get(job.get("type"), "a job")
    stamp = job.get("startedAt") or job.get("createdAt")
    since = ""
    if stamp:
        age = _age_s(stamp)
        ago = f"{age:.0f} s" if age < 120 else f"{age / 60:.0f} min" if age < 7200 else f"{age / 3600:.0f} h"
        since = f" started {str(stamp)[11:19]} UTC ({ago} ago)"
    where = "in this kernel" if job.get("pid") == _PID else f"in another process (pid {job.get('pid')})" if job.get("pid") else ""
    return " ".join(part for part in (f"{kind}{since} is still answering", where) if part)


def lock_thread(store: Store, thread_id: str, job_id: str, *, label: str = "This thread") -> None:
    """Set MessageThread.lockingJob to job_id, or raise ThreadBusyError if a live job holds it.
    (A turn takes its lock with `JobRun.start(lock=...)`, in the transaction that starts it.)"""
    with store.transaction() as conn:
        _take_lock(store, conn, thread_id, job_id, label)


def release_thread(store: Store, thread_id: str, job_id: str) -> None:
    """Clear the thread's lock if this job holds it."""
    store.conn.execute(
        'UPDATE "MessageThread" SET lockingJob = NULL, updatedAt = ? WHERE id = ? AND lockingJob = ?',
        (now_iso(), thread_id, job_id),
    )


def check_unlocked(store: Store, thread_id: str, *, label: str, hint: str) -> None:
    """Raise ThreadBusyError if a live job holds the thread's lock (a stale lock does not count)."""
    row = store.conn.execute('SELECT lockingJob FROM "MessageThread" WHERE id = ?', (thread_id,)).fetchone()
    holder = row[0] if row else None
    if holder and not _lock_is_stale(store, holder):
        raise ThreadBusyError(f"{label} is busy: {_holder_words(store, holder)}; {hint}")


def unlock_thread(store: Store, thread_id: str, *, label: str = "This thread") -> str | None:
    """Free the thread's lock by hand and return the id of the job that held it (None if it was
    not locked). That job, if it had not ended, is marked interrupted with a note. Refuses with
    ThreadBusyError while the job runs in a live process (this one included)."""
    with store.transaction() as conn:
        row = conn.execute('SELECT lockingJob FROM "MessageThread" WHERE id = ?', (thread_id,)).fetchone()
        holder = row[0] if row else None
        if not holder:
            return None
        if not _lock_is_stale(store, holder):
            raise ThreadBusyError(
                f"{label} is busy: {_holder_words(store, holder)}; stop that turn (Ctrl-C or Stop) "
                "or end that kernel, then unlock."
            )
        conn.execute(
            'UPDATE "Jobs" SET status = \'interrupted\', error = ?, finishedAt = ?, updatedAt = ? '
            "WHERE id = ? AND status NOT IN ('completed', 'failed', 'interrupted')",
            ("interrupted: unlocked by the user (its process had stopped answering)", now_iso(), now_iso(), holder),
        )
        conn.execute('UPDATE "MessageThread" SET lockingJob = NULL, updatedAt = ? WHERE id = ?', (now_iso(), thread_id))
    return holder


# ---------------------------------------------------------------- background runs

_EXECUTOR: ThreadPoolExecutor | None = None


class BackgroundJob:
    """A function running in a background thread, recorded as a Jobs row."""

    def __init__(self, run: JobRun, future: Future) -> None:
        self._run = run
        self.future = future

    @property
    def id(self) -> str:
        return self._run.id

    @property
    def status(self) -> str:
        return self._run.store.get("Jobs", self.id)["status"]

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None) -> Any:
        return self.future.result(timeout)

    def __repr__(self) -> str:
        return f"<BackgroundJob {self._run.id} {self.status}>"


def run_in_background(store: Store, fn: Callable[..., Any], *args: Any, name: str | None = None, **kwargs: Any) -> BackgroundJob:
    """Run fn(*args, **kwargs) in a worker thread as a job; its return value is logged."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aihub-job")
    run = JobRun(store, name or getattr(fn, "__name__", "job"), "background")

    def work() -> Any:
        with run:
            result = fn(*args, **kwargs)
            run.log(f"result: {result!r}"[:2000])
            return result

    return BackgroundJob(run, _EXECUTOR.submit(work))
