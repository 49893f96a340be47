"""Shared fixtures: a temporary AIHUB_HOME, and a fresh store on a real file."""

from __future__ import annotations

import pytest

from aihub_nb.store import Store

# Offline and away from the user's own hub: see the conftest.py at the top of the repository.

@pytest.fixture
def home(tmp_path, monkeypatch):
    """An AIHUB_HOME of its own (not created yet), so Hub() never touches ~/.aihub."""
    path = tmp_path / "aihub-home"
    monkeypatch.setenv("AIHUB_HOME", str(path))
    return path


@pytest.fixture
def store(tmp_path):
    """A fresh Store on a real SQLite file (WAL, like a user's), closed after the test."""
    s = Store(tmp_path / "aihub.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def _local_server():
    from aihub_nb.testing import LocalServer

    with LocalServer() as srv:
        yield srv


@pytest.fixture
def server(_local_server):
    """The local OpenAI/Ollama-compatible server (one per session), with no queued replies."""
    _local_server.reset()
    yield _local_server
    _local_server.reset()


@pytest.fixture
def hub(tmp_path, home):
    """A Hub on a fresh real file, closed after the test."""
    from aihub_nb import Hub

    h = Hub(tmp_path / "hub")
    yield h
    h.close()


@pytest.fixture(scope="module")
def ip():
    """A real IPython shell with the extension loaded (one per test module)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "aihub_nb")
    yield shell
    shell.run_line_magic("unload_ext", "aihub_nb")
