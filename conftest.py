"""For the whole test run (tests/ and the shipped notebooks): offline, and nothing left in /tmp.

Every test and notebook kernel runs against a throw-away hub (aihub_nb.testing.offline_environment),
and pytest's temporary directories go in one folder of this run, removed at its end.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

from aihub_nb.testing import offline_environment

_made: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if config.option.basetemp is None:  # pytest keeps its own under /tmp/pytest-of-USER otherwise
        config.option.basetemp = tempfile.mkdtemp(prefix="aihub-tests-")
        _made.append(config.option.basetemp)
    _made.append(offline_environment())


def pytest_unconfigure(config):
    for path in _made:
        shutil.rmtree(path, ignore_errors=True)
