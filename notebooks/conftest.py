"""nbval runs these notebooks offline, each in a hub of its own.

The kernel nbval starts for a notebook inherits this process's environment, and it starts while
the notebook's first cell is set up: each notebook gets a fresh AIHUB_HOME there.
"""

from __future__ import annotations

import pytest

from aihub_nb.testing import offline_environment

_homes: dict[str, str] = {}


def pytest_configure(config):
    offline_environment()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    path = str(item.path)
    if path.endswith(".ipynb") and path not in _homes:
        _homes[path] = offline_environment()
