"""Embeddings: texts to vectors through an EMBEDDING connection, with a cache in the store.

`embed_texts` looks each text up first in the kernel's `VectorMemo` (the vectors this process has
already embedded or read, bounded in bytes), then in `EmbeddingCache` (keyed by the model and the
text: the cache that outlives the kernel and is shared between kernels), sends only the texts not
found, in batches of at most the provider's limit (OpenAI: 2,048 inputs), retries
429 and 5xx answers like chat turns, keeps the new vectors (float32 bytes), and records one job and
per request the metrics `latency_ms`, `prompt_tokens`, `inputs`, `cache_hits` and `cost_usd`
(when the model has a price). `nearest` ranks texts by cosine similarity in numpy.

numpy is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .clock import now_iso, uuid7_many
from .errors import ProviderError, UsageError
from .jobs import JobRun
from .payloads import cached_vectors, vector_slot

if TYPE_CHECKING:
    from .providers.base import Provider
    from .recording import Recorder
    from .store import Store

__all__ = ["MAX_RETRIES", "MEMORY_ENV", "VectorMemo", "cache_model", "embed_texts", "nearest"]

MAX_RETRIES = 3
MAX_BACKOFF = 30.0
MIN_BACKOFF = 0.25
# The memory a kernel keeps for vectors it has already seen, in MiB (0 turns it off).
MEMORY_ENV = "AIHUB_EMBEDDING_MEMORY_MB"
DEFAULT_MEMORY_MB = 256
# What one kept vector costs beyond its bytes and its text: the key tuple, the entry, the objects.
_ENTRY_OVERHEAD = 160


class VectorMemo:
    """The vectors this kernel has embedded or read from the store, by (cache model, text), so
    embedding a text again in the same session is a dictionary lookup instead of a store query.

    It holds only vectors that are also in `EmbeddingCache` (whose rows are never replaced: a
    recorded response refers to them), so it can never disagree with the store; the store stays the
    cache that outlives the kernel. Bounded by `max_bytes` (vector, text and bookkeeping), the
    least recently used out first; `max_bytes=None` reads AIHUB_EMBEDDING_MEMORY_MB (256 by default).
    Thread-safe: one lock per call, not per text."""

    def __init__(self, max_bytes: int | None = None) -> None:
        if max_bytes is None:
            raw = os.environ.get(MEMORY_ENV, "").strip()
            try:
                megabytes = float(raw) if raw else DEFAULT_MEMORY_MB
            except ValueError:
                raise UsageError(f"{MEMORY_ENV} is {raw!r}: set it to a number of MiB (0 keeps no vectors in memory).") from None
            max_bytes = int(max(megabytes, 0) * 2**20)
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, model_key: str, texts: list[str]) -> list[bytes | None]:
        """Each text's vector, or None where this kernel has not seen it; the ones found become
        the most recently used."""
        if not self._items:
            return [None] * len(texts)
        with self._lock:
            get, touch = self._items.get, self._items.move_to_end
            found = [get((model_key, text)) for text in texts]
            for text, vector in zip(texts, found):
                if vector is not None:
                    touch((model_key, text))
        return found

    def put(self, model_key: str, pairs: Iterable[tuple[str, bytes]]) -> None:
        """Keep (text, vector) pairs, dropping the least recently used past the budget."""
        if self.max_bytes <= 0:
            return
        with self._lock:
            items = self._items
            for text, vector in pairs:
                cost = len(vector) + len(text) + _ENTRY_OVERHEAD
                if cost > self.max_bytes:
                    continue
                key = (model_key, text)
                if key in items:
                    items.move_to_end(key)
                    continue
                items[key] = vector
                self.size += cost
            while self.size > self.max_bytes:
                (_, text), vector = items.popitem(last=False)
                self.size -= len(vector) + len(text) + _ENTRY_OVERHEAD

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.size = 0


def cache_model(connection: dict[str, Any], endpoint: str) -> str:
    """What identifies the vectors a connection makes: provider, endpoint and model id."""
    return f"{connection['provider']} {endpoint} {connection['modelId']}"


def _key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()


def embed_texts(
    store: Store,
    provider: Provider,
    connection: dict[str, Any],
    texts: list[str],
    *,
    model_key: str,
    record_metrics: Callable[..., None],
    recorder: Recorder,
    price: Callable[[int], float | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
    memo: VectorMemo | None = None,
):
    """The vectors of `texts` as a float32 array (len(texts) x d), from `memo` and the store's cache
    where they have them; `progress(done, total)` is called after each request."""
    import numpy as np

    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise UsageError(f"Text {index} is {text!r}: every text to embed must be a non-empty string.")
    # Memory first; then the store, for the texts memory does not hold (hashed only those).
    vectors_at: list[bytes | None] = memo.get(model_key, texts) if memo is not None else [None] * len(texts)
    unseen = [i for i, vector in enumerate(vectors_at) if vector is None]
    keys: dict[str, str] = {}  # text -> cache key, each distinct unseen text once, in order
    for i in unseen:
        if texts[i] not in keys:
            keys[texts[i]] = _key(model_key, texts[i])
    found = _lookup(store, list(keys.values()))
    if memo is not None and found:
        memo.put(model_key, [(text, found[key]) for text, key in keys.items() if key in found])
    missing: dict[str, str] = {key: text for text, key in keys.items() if key not in found}  # key -> text, in order
    sent = set(missing.values())
    hits = len(texts) - sum(1 for i in unseen if texts[i] in sent)
    limit = max(1, min(batch_size or provider.max_embedding_inputs, provider.max_embedding_inputs))
    run = JobRun(store, f"embed: {len(texts)} texts", "embed", references={"connection": connection["id"]})
    dims = {"provider": connection["provider"], "model": connection["modelId"], "connection": connection["name"]}
    try:
        run.start()
        run.log(f"{len(texts)} texts, {hits} from the cache, {len(missing)} to send in batches of {limit}")
        pending = list(missing.items())
        if not pending:
            record_metrics({"latency_ms": 0.0, "inputs": 0, "cache_hits": hits}, {**dims, "status": "completed"}, references={"job": run.id})
        for start in range(0, len(pending), limit):
            batch = pending[start : start + limit]
            started = time.perf_counter()
            try:
                result = _with_retries(provider, connection, batch, run, recorder, model_key)
            except BaseException:
                values = {"latency_ms": round((time.perf_counter() - started) * 1000, 3), "inputs": len(batch), "error": 1.0}
                record_metrics(values, {**dims, "status": "failed"}, references={"job": run.id})
                raise
            latency = (time.perf_counter() - started) * 1000
            vectors = result.vectors
            if len(vectors) != len(batch):
                raise ProviderError(
                    f"Connection '{connection['name']}' answered {len(vectors)} vectors for {len(batch)} texts; "
                    "check that the model is an embedding model.",
                    connection=connection["name"],
                )
            blobs = _remember(store, model_key, [key for key, _ in batch], vectors)
            for (key, _), vector in zip(batch, blobs):
                found[key] = vector
            if memo is not None:
                memo.put(model_key, [(text, vector) for (_, text), vector in zip(batch, blobs)])
            values: dict[str, float] = {"latency_ms": round(latency, 3), "inputs": len(batch), "cache_hits": hits if start == 0 else 0}
            if result.prompt_tokens is not None:
                values["prompt_tokens"] = result.prompt_tokens
                cost = price(result.prompt_tokens) if price else None
                if cost is not None:
                    values["cost_usd"] = cost
            record_metrics(values, {**dims, "status": "completed"}, references={"job": run.id})
            if progress:
                progress(min(start + limit, len(pending)), len(pending))
    except BaseException as exc:
        run.finish(exc)
        raise
    run.finish()
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    for i in unseen:
        vectors_at[i] = found[keys[texts[i]]]
    # One copy of all the bytes, read as an n x d array: no per-row arrays.
    data = b"".join(vectors_at)  # type: ignore[arg-type]  (every position is filled by now)
    return np.frombuffer(data, dtype="<f4").reshape(len(texts), -1).copy()


def _with_retries(
    provider: Provider, connection: dict[str, Any], batch: list[tuple[str, str]], run: JobRun, recorder: Recorder,
    model_key: str,
):
    """The provider's answer for the (key, text) pairs of `batch`; the recording keeps the vectors
    in the cache under those keys and its response refers to them."""
    texts = [text for _, text in batch]
    with recorder.call(job=run.id, embedding_keys=(model_key, [key for key, _ in batch])):
        for attempt in range(MAX_RETRIES + 1):
            try:
                return provider.embed(connection["modelId"], texts)
            except ProviderError as exc:
                if not exc.retryable or attempt == MAX_RETRIES:
                    raise
                wait = _backoff(attempt, exc.retry_after)
                run.log(f"attempt {attempt + 1} failed ({exc}); retrying in {wait:.2f}s")
                time.sleep(wait)
    raise AssertionError("unreachable")


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None and retry_after >= 0:
        return min(max(float(retry_after), MIN_BACKOFF), MAX_BACKOFF)
    return min(0.5 * (2**attempt), MAX_BACKOFF)


def _lookup(store: Store, keys: list[str]) -> dict[str, bytes]:
    """The cached vectors of `keys`, in one query (by slot: the cache's integer index)."""
    return cached_vectors(store.conn, keys) if keys else {}


def _remember(store: Store, model_key: str, keys: list[str], vectors: Any) -> list[bytes]:
    """Keep new vectors in one transaction; rows already there (the recording keeps the vectors it
    stores; another kernel may have cached a text meanwhile) keep their first vector, and a key
    whose slot another key holds is not kept. Returns the vectors' bytes."""
    import numpy as np

    matrix = np.ascontiguousarray(np.asarray(vectors, dtype="<f4"))
    dimensions = int(matrix.shape[1]) if matrix.ndim == 2 else 0
    blobs = [row.tobytes() for row in matrix]
    slots = [vector_slot(key) for key in keys]
    wanted = json.dumps(sorted(set(slots)))
    sql = 'SELECT count(*) FROM "EmbeddingCache" WHERE slot IN (SELECT value FROM json_each(?))'
    if store.conn.execute(sql, (wanted,)).fetchone()[0] == len(set(slots)):
        return blobs  # the usual case: the recording has kept them all
    now = now_iso()
    rows = [
        (row_id, now, now, key, slot, model_key, dimensions, blob)
        for row_id, key, slot, blob in zip(uuid7_many(len(keys)), keys, slots, blobs)
    ]
    with store.transaction() as conn:
        conn.executemany(
            'INSERT OR IGNORE INTO "EmbeddingCache" (id, "references", createdAt, updatedAt, key, slot, model, dimensions, vector) '
            "VALUES (?, '{}', ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return blobs


def nearest(query_vector: Any, vectors: Any, k: int) -> tuple[Any, Any]:
    """(indices, scores) of the `k` rows of `vectors` most cosine-similar to `query_vector`, best first."""
    import numpy as np

    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise UsageError(f"k must be a whole number from 1 up, not {k!r}.")
    matrix = np.asarray(vectors, dtype=np.float32)
    query = np.asarray(query_vector, dtype=np.float32).ravel()
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
    scores = (matrix @ query) / np.where(norms == 0, 1.0, norms)
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    order = top[np.argsort(-scores[top], kind="stable")]
    return order, scores[order]


