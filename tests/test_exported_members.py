"""The public surface of `aihub_nb`: a sorted __all__ whose every name resolves, and nothing heavy
imported until a name is used."""

from __future__ import annotations

import subprocess
import sys
import types

import aihub_nb


def test_all_lists_every_public_name():
    """The httpx way: every public attribute of the package that is not a submodule is in
    __all__, and every name in __all__ is one."""
    public = {
        name for name in dir(aihub_nb)
        if not name.startswith("_") and not isinstance(getattr(aihub_nb, name), types.ModuleType)
    }
    assert public == set(aihub_nb.__all__) - {"__version__"}


def test_all_is_sorted_and_every_name_resolves():
    assert aihub_nb.__all__ == sorted(aihub_nb.__all__)
    for name in aihub_nb.__all__:
        assert getattr(aihub_nb, name) is not None, name
    assert not [name for name in aihub_nb.__all__ if name.startswith("_") and name != "__version__"]


def test_unknown_attribute_is_an_attribute_error():
    try:
        aihub_nb.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("aihub_nb.NoSuchThing resolved")


def test_names_load_their_modules_only_when_used():
    code = (
        "import sys, aihub_nb\n"
        "before = {m for m in ('aihub_nb.hub', 'aihub_nb.chat', 'aihub_nb.store') if m in sys.modules}\n"
        "aihub_nb.Hub\n"
        "after = {m for m in ('aihub_nb.hub', 'aihub_nb.store') if m in sys.modules}\n"
        "print(sorted(before), sorted(after))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] ['aihub_nb.hub', 'aihub_nb.store']"
