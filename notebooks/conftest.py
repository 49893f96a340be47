"""nbval runs the shipped notebooks offline, each in a hub of its own, and only those.

The kernel nbval starts for a notebook inherits this process's environment, and it starts while
the notebook's first cell is set up: each notebook gets a fresh AIHUB_HOME there, removed when the
run ends. Any other notebook in this folder is not collected.
"""

from __future__ import annotations

import shutil

import pytest

from aihub_nb.testing import offline_environment

SHIPPED = ("agents.ipynb", "batch.ipynb", "monitoring.ipynb", "multimodal.ipynb", "quickstart.ipynb")


def pytest_ignore_collect(collection_path, config):
    if collection_path.suffix == ".ipynb" and collection_path.name not in SHIPPED:
        return True
    return None


_homes: dict[str, str] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    path = str(item.path)
    if path.endswith(".ipynb") and path not in _homes:
        _homes[path] = offline_environment()


def pytest_unconfigure(config):
    for home in _homes.values():
        shutil.rmtree(home, ignore_errors=True)
