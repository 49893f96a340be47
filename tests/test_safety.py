"""SIGTERM keeps batched metrics (they are written before the process ends), a kill -9 loses at
most the last second's; the hub folder is private."""

from __future__ import annotations

import os
import signal

import pytest

from aihub_nb import Hub
from helpers import run_python as _python


_LOGS_THEN_WAITS = """
    import signal, sys, time
    from aihub_nb import Hub
    if sys.argv[2] == "chained":
        def previous(signum, frame):
            print("previous handler ran", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, previous)
    hub = Hub(sys.argv[1])
    for i in range(250):
        hub.log_metric("score", i, run="sigterm")
    print("logged", flush=True)
    time.sleep(30)
"""


@pytest.mark.parametrize("handler", ["default", "chained"])
def test_sigterm_writes_the_pending_metrics_then_ends_as_before(tmp_path, handler):
    home = tmp_path / "home"
    proc = _python(_LOGS_THEN_WAITS, str(home), handler)
    assert proc.stdout.readline().strip() == "logged", proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    if handler == "default":
        assert proc.returncode == -signal.SIGTERM
    else:
        assert proc.returncode == 3 and "previous handler ran" in out
    hub = Hub(home)
    try:
        assert hub.metrics("score")["value"].tolist() == [float(i) for i in range(250)]
    finally:
        hub.close()


def test_an_existing_home_open_to_others_is_tightened(tmp_path):
    import stat

    home = tmp_path / "shared-home"
    home.mkdir()
    os.chmod(home, 0o777)
    Hub(home).close()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "aihub.db").stat().st_mode) == 0o600


_LOGS_THEN_IDLES = """
    import sys, time
    from aihub_nb import Hub
    hub = Hub(sys.argv[1])
    for i in range(250):
        hub.log_metric("score", i, run="kill")
    time.sleep(1.5)  # past the 1 s a batch may wait
    print("logged", flush=True)
    time.sleep(30)
"""


def test_kill_9_loses_no_metric_older_than_a_second(tmp_path):
    home = tmp_path / "home"
    proc = _python(_LOGS_THEN_IDLES, str(home), "-")
    assert proc.stdout.readline().strip() == "logged", proc.stderr.read()
    proc.kill()
    proc.wait()
    hub = Hub(home)
    try:
        assert hub.metrics("score")["value"].tolist() == [float(i) for i in range(250)]
    finally:
        hub.close()
