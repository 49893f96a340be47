"""For the whole test run (tests/ and the shipped notebooks): offline, and nothing left in /tmp.

Every test and notebook kernel runs against a throw-away hub (aihub_nb.testing.offline_environment).
What the run writes to temporary folders goes in one folder of its own, removed at its end:
pytest's tmp_path folders, and TMPDIR, which the notebook kernels and the processes the tests
start inherit (the shipped notebooks make their scratch hubs there).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from aihub_nb.testing import offline_environment

_run: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    root = Path(tempfile.mkdtemp(prefix="aihub-t-"))
    _run.append(str(root))
    if config.option.basetemp is None:  # pytest keeps its own under /tmp/pytest-of-USER otherwise
        config.option.basetemp = str(root / "p")  # short: Chromium's socket paths under it have a length limit
    (root / "t").mkdir()
    os.environ["TMPDIR"] = str(root / "t")
    tempfile.tempdir = None  # read TMPDIR again
    (root / "h").mkdir()
    offline_environment(str(root / "h"))


def pytest_unconfigure(config):
    for path in _run:
        shutil.rmtree(path, ignore_errors=True)
