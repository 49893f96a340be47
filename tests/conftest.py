"""Shared fixtures: a temporary AIHUB_HOME, and a fresh store on a real file."""

from __future__ import annotations

import os
import tempfile

import pytest

from aihub_nb.store import Store


def pytest_configure(config):
    """Tests and notebooks run offline and away from the user's own hub: a throw-away
    AIHUB_HOME, no OpenAI key, an Ollama host where nothing listens, a non-GUI matplotlib.
    Notebook kernels (nbval) inherit this environment."""
    os.environ["AIHUB_HOME"] = tempfile.mkdtemp(prefix="aihub-test-home-")
    os.environ.pop("OPENAI_API_KEY", None)
    os.environ["OLLAMA_HOST"] = "http://127.0.0.1:9"
    os.environ.setdefault("MPLBACKEND", "Agg")


_notebook_homes: dict[str, str] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Each notebook's kernel starts with an AIHUB_HOME of its own, so notebooks don't see
    each other's chats (nbval starts the kernel while setting up the notebook's first cell)."""
    path = str(item.path)
    if path.endswith(".ipynb") and path not in _notebook_homes:
        _notebook_homes[path] = os.environ["AIHUB_HOME"] = tempfile.mkdtemp(prefix="aihub-nb-home-")


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
