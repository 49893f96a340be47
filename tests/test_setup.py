"""First run and user settings: discovery of local model servers, the setup panel (headless) and its
terminal form, %aihub settings, connect --replace, the hub panel's Settings tab, themes."""

from __future__ import annotations

import socket
import time

import pytest
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from aihub_nb import magics
from aihub_nb.discovery import discover
from aihub_nb.errors import UsageError
from aihub_nb.widgets import Dashboard


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def shell(home):
    """A real IPython shell with the extension loaded fresh on the `home` hub (a new home)."""
    ip = InteractiveShell.instance()
    ip.run_line_magic("unload_ext", "aihub_nb")
    magics.use_hub(None)
    yield ip
    ip.run_line_magic("unload_ext", "aihub_nb")
    magics.use_hub(None)


def _load(ip) -> str:
    with capture_output() as captured:
        ip.run_line_magic("load_ext", "aihub_nb")
    return "\n".join(o.data.get("text/plain", "") for o in captured.outputs) + captured.stdout


def _plain(result) -> str:
    return result._repr_mimebundle_()["text/plain"] if hasattr(result, "_repr_mimebundle_") else str(result.data)


# ------------------------------------------------------------ discovery


def test_discover_finds_ollama_and_an_openai_compatible_server(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + "a" * 20)
    found = discover(ports=[(server.port, "mine", "My server")], ollama_host=server.ollama_host)
    assert [f.name for f in found] == ["openai", "ollama", "mine"]  # the order connect auto prefers
    ollama, mine = found.found[1], found.found[2]
    assert ollama.provider == "OLLAMA" and ollama.host == server.ollama_host and "local-chat:latest" in ollama.models
    assert mine.provider == "OPENAI" and mine.base_url == server.openai_base_url and "local-chat" in mine.models
    assert f"--base-url {server.openai_base_url}" in mine.connect_command()
    assert "%aihub connect OLLAMA local-chat" in found.text()


def test_discover_with_nothing_listening_is_quick_and_says_what_to_do():
    started = time.monotonic()
    found = discover(ports=[_free_port()], ollama_host=f"http://127.0.0.1:{_free_port()}")
    assert not found and list(found) == []
    assert time.monotonic() - started < 1.5
    assert "Found no model" in found.text() and "%aihub connect local" in found.text()


def test_discover_never_waits_long_for_a_server_that_does_not_answer():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        found = discover(ports=[port, port], ollama_host=f"http://127.0.0.1:{port}", timeout=5, deadline=0.5)
        assert time.monotonic() - started < 1.2
    assert not found


def test_local_ports_come_from_the_environment(server, monkeypatch, hub):
    monkeypatch.setenv("AIHUB_LOCAL_PORTS", f"{server.port}")
    found = hub.discover()
    assert [f.name for f in found] == [f"port-{server.port}"]
    monkeypatch.setenv("AIHUB_LOCAL_PORTS", "")
    assert not hub.discover()


def test_connect_auto_prefers_a_local_server_to_the_demo_and_keeps_the_default(hub, server, monkeypatch):
    monkeypatch.setenv("AIHUB_LOCAL_PORTS", f"{server.port}")
    hub.connect_local()  # the first connection: the default
    view = hub.autoconnect()
    assert (view["name"], view["provider"], view["endpoint"]) == (f"port-{server.port}", "OPENAI", server.openai_base_url)
    assert hub.settings()["defaultConnection"] == "local"  # kept
    assert hub.chat("c", model=view["name"]).send("hi").status == "completed"
    assert hub.autoconnect()["id"] == view["id"]  # reused
    monkeypatch.setenv("AIHUB_LOCAL_PORTS", "")
    assert hub.autoconnect()["name"] == "local"
    assert len(hub.connections()) == 2


# ------------------------------------------------------------ connect --replace


def test_connect_refuses_a_name_in_use_unless_replace(shell, server):
    _load(shell)
    shell.run_line_magic("aihub", f"connect OPENAI local-chat --name m --base-url {server.openai_base_url}")
    with pytest.raises(IPythonUsageError, match=r"connection named 'm' exists already \(OPENAI local-chat\); add --replace"):
        shell.run_line_magic("aihub", f"connect OLLAMA local-chat --name m --host {server.ollama_host}")
    hub = magics.default_hub()
    assert hub.connection("m")["provider"] == "OPENAI"
    shell.run_line_magic("aihub", f"connect OLLAMA local-chat --name m --host {server.ollama_host} --replace")
    assert hub.connection("m")["provider"] == "OLLAMA"
    shell.run_line_magic("aihub", "connect local")
    shell.run_line_magic("aihub", "connect local")  # the demo connection again: reused, not refused
    assert hub.settings()["defaultConnection"] == "m"  # connect local kept the default
    assert [c["name"] for c in hub.connections()] == ["m", "local"]


# ------------------------------------------------------------ first run


def test_first_load_in_a_new_home_shows_what_was_found_once(shell, home):
    shown = _load(shell)
    assert "aihub_nb setup" in shown and "Found no model" in shown and "%aihub connect local" in shown
    hub = magics.default_hub()
    assert hub.settings()["bootstrapped"] is True
    shell.run_line_magic("unload_ext", "aihub_nb")
    assert "aihub_nb setup" not in _load(shell)  # not again
    assert "Found no model" in _plain(shell.run_line_magic("aihub", "setup"))  # unless asked for


def test_a_home_with_connections_is_not_set_up_again(shell, home):
    from aihub_nb import Hub

    hub = Hub(home)
    hub.connect_local()
    hub.close()
    assert "aihub_nb setup" not in _load(shell)
    assert magics.default_hub().settings()["bootstrapped"] is True


def test_setup_panel_connects_what_was_picked(hub, server):
    from aihub_nb.widgets.setup import SetupPanel

    found = hub.discover(ports=[(server.port, "mine", "My server")], ollama_host=server.ollama_host)
    panel = SetupPanel(hub, found)
    boxes = {c.name: c.box for c in panel.choices}
    assert list(boxes) == ["ollama", "mine", "local"]
    assert [name for name, box in boxes.items() if box.value] == ["ollama"]  # the first found, not the demo
    boxes["mine"].value = True
    panel.default_pick.value = "mine"
    panel.connect_button.click()
    assert panel.error.value == ""
    assert [(c["name"], c["provider"]) for c in hub.connections()] == [("ollama", "OLLAMA"), ("mine", "OPENAI")]
    settings = hub.settings()
    assert settings["defaultConnection"] == "mine" and settings["bootstrapped"] is True
    assert "Connected ollama, mine; the default is mine" in panel.status.value


def test_setup_panel_offers_the_demo_when_nothing_is_found(hub):
    from aihub_nb.widgets.setup import SetupPanel

    panel = SetupPanel(hub, hub.discover(ports=[_free_port()]))
    assert [(c.name, c.box.value) for c in panel.choices] == [("local", True)]
    assert "Found no model" in panel.found_area.children[0].value
    panel.choices[0].box.value = False
    panel.connect_button.click()
    assert "Tick a model to connect" in panel.error.value and hub.connections() == []
    panel.skip_button.click()
    assert hub.settings()["bootstrapped"] is True and hub.connections() == []
    panel.choices[0].box.value = True
    panel.connect_button.click()
    assert [c["name"] for c in hub.connections()] == ["local"]
    assert "demo" in hub.chat("try").send("hello").text.lower()


# ------------------------------------------------------------ settings


def test_settings_magic_shows_and_sets_with_checks(shell):
    _load(shell)
    shown = shell.run_line_magic("aihub", "settings").data
    for name in ("bootstrapped", "sidebarOpen", "theme", "lastPage", "defaultConnection", "AihubMagics.interpolate"):
        assert name in shown
    shell.run_line_magic("aihub", "settings theme dark")
    hub = magics.default_hub()
    assert hub.settings()["theme"] == "dark" and hub.theme() == "dark"
    for line, message in (
        ("settings theme purple", "theme must be one of auto, light, dark, not 'purple'"),
        ("settings sidebarOpen maybe", "sidebarOpen is true or false"),
        ("settings colour red", "Unknown setting 'colour'"),
        ("settings theme", "give theme a value"),
        ("settings defaultConnection nope", "No connection named 'nope'"),
    ):
        with pytest.raises(IPythonUsageError, match=message):
            shell.run_line_magic("aihub", line)
    assert hub.settings()["theme"] == "dark"
    shell.run_line_magic("aihub", "settings sidebar_open yes")
    assert hub.settings()["sidebarOpen"] is True


def test_hub_side_falls_back_to_the_cell_outside_jupyterlab(shell):
    _load(shell)
    with capture_output() as captured:
        panel = shell.run_line_magic("aihub", "hub --side")
    assert "The side area needs JupyterLab" in captured.outputs[0].data["text/plain"]
    assert type(panel).__name__ == "HubPanel" and panel.side_button.layout.display == "none"
    assert magics.default_hub().settings()["sidebarOpen"] is False


def test_settings_tab_edits_the_settings_and_the_magics_config(shell):
    _load(shell)
    hub = magics.default_hub()
    hub.connect_local()
    hub.connect_local(name="other")
    panel = shell.run_line_magic("aihub", "hub")
    panel.select("Settings")
    assert hub.settings()["lastPage"] == "Settings"
    panel.theme_pick.value = "dark"
    assert hub.settings()["theme"] == "dark"
    panel.default_pick.value = "other"
    assert hub.settings()["defaultConnection"] == "other"
    assert "★" in panel.connections_table.value.split("other")[1].split("</tr>")[0]
    panel.config_fields["show_footer"].value = False
    assert magics._MAGICS.show_footer is False
    panel.config_fields["refresh_interval"].value = -1.0  # a Float trait takes it; then back
    panel.config_fields["refresh_interval"].value = 0.05
    assert magics._MAGICS.refresh_interval == 0.05
    panel.close()


# ------------------------------------------------------------ themes


def test_auto_theme_follows_jupyterlab_settings(tmp_path, monkeypatch):
    from aihub_nb.theme import resolve

    monkeypatch.setenv("JUPYTERLAB_SETTINGS_DIR", str(tmp_path))
    assert resolve("auto") == "light"  # no settings file: JupyterLab's default
    path = tmp_path / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    path.parent.mkdir(parents=True)
    path.write_text('{\n    // the theme\n    "theme": "JupyterLab Dark"\n}\n')
    assert resolve("auto") == "dark" and resolve("light") == "light"


def _corner_and_text(ax):
    """The figure's background colour (a corner pixel) and a tick label's colour, as drawn."""
    import io

    import matplotlib.colors as mcolors
    import matplotlib.image as mpimg

    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png")
    buffer.seek(0)
    pixel = mpimg.imread(buffer)[2, 2][:3]
    label = ax.get_xticklabels()[0] if ax.get_xticklabels() else ax.title
    return sum(pixel) / 3, sum(mcolors.to_rgb(label.get_color())) / 3


def test_dark_theme_gives_dark_plots(hub, server):
    import matplotlib.pyplot as plt

    from aihub_nb import plots

    hub.connect("OPENAI", "local-chat", name="m", base_url=server.openai_base_url)
    hub.chat("c").send("hi")
    ax = plots.latency_distribution(hub.store)
    background, text = _corner_and_text(ax)
    assert background > 0.9 and text < 0.2  # light: white figure, dark text
    hub.set_setting("theme", "dark")
    ax2 = plots.latency_distribution(hub.store)
    background, text = _corner_and_text(ax2)
    assert background < 0.15 and text > 0.6  # dark figure, light text
    ax3 = plots.metric_over_time(hub.metrics(), "latency_ms", theme="light")
    assert _corner_and_text(ax3)[0] > 0.9
    with pytest.raises(UsageError, match="theme must be one of"):
        plots.metric_over_time(hub.store, "latency_ms", theme="blue")
    dashboard = Dashboard(hub.store)
    dashboard.refresh()
    assert tuple(dashboard.figure.get_facecolor()[:3]) < (0.15, 0.15, 0.15)
    dashboard.close()
    plt.close("all")


# ------------------------------------------------------------ the README's main command


def test_lab_copies_the_notebooks_once_and_opens_the_quickstart_there(tmp_path, monkeypatch):
    from aihub_nb import __main__ as entry

    monkeypatch.setenv("AIHUB_NOTEBOOKS", str(tmp_path / "work"))
    folder = entry.workspace()
    assert [p.name for p in entry.copy_notebooks(folder)] == list(entry.SHIPPED)
    (folder / "quickstart.ipynb").write_text("{}")  # the user's own changes
    assert entry.copy_notebooks(folder) == []
    assert (folder / "quickstart.ipynb").read_text() == "{}"
    command = entry.lab_command(["--no-browser"], folder)
    assert command[1:4] == ["-m", "jupyter", "lab"] and f"--ServerApp.root_dir={folder}" in command
    assert command[-2:] == ["--no-browser", "quickstart.ipynb"]
    assert not list(folder.glob("conftest.py"))  # nothing of the test setup in the user's file browser


def test_only_the_shipped_notebooks_are_collected(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    mine = root / "notebooks" / f"mine-{tmp_path.name}.ipynb"
    mine.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly"],
                             cwd=root, capture_output=True, text=True, timeout=300).stdout
    finally:
        mine.unlink()
    collected = {line.split("::")[0] for line in out.splitlines() if ".ipynb" in line}
    assert collected == {f"notebooks/{n}" for n in ("agents.ipynb", "batch.ipynb", "monitoring.ipynb", "multimodal.ipynb", "quickstart.ipynb")}


def test_lab_installs_the_saved_widget_state_default_where_jupyterlab_reads_it(tmp_path):
    """An editable install does not ship data files: aihub-lab puts the settings default in place."""
    import json

    from aihub_nb import __main__ as entry

    written = entry.install_lab_settings(prefix=tmp_path)
    assert written == tmp_path / "share/jupyter/lab/settings/overrides.d/aihub_nb.json"
    assert json.loads(written.read_text())["@jupyter-widgets/jupyterlab-manager:plugin"]["saveState"] is True
    written.write_text("{}")  # already there (the user's own edit): left alone
    assert entry.install_lab_settings(prefix=tmp_path) is None and written.read_text() == "{}"
