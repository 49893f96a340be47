"""The browser suite: JupyterLab in a throw-away home, driven by headless Chromium with selenium.

`lab` (one per session) serves a copy of the shipped notebooks, their stored outputs removed,
from a temporary folder: its own Jupyter config, data and runtime folders, AIHUB_HOME and TMPDIR
(so nothing a notebook writes lands in the repository or directly in /tmp), token auth with a
random token. `page` (one per test) is a fresh Chromium on its own workspace, with helpers that act
as a person does (menus, clicks, typing) and read what the page shows; it saves a screenshot of
the page when the test ends, under $AIHUB_SCREENSHOTS (default: the test's tmp_path).

Without chromium, chromedriver or selenium the suite skips with the reason; with CI=true it fails
instead, so CI always runs it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
START_TIMEOUT = 90  # seconds for JupyterLab to answer
RUN_TIMEOUT = float(os.environ.get("AIHUB_BROWSER_RUN_TIMEOUT", 150))  # seconds for a notebook's Run All (the machine may be busy)
UI_TIMEOUT = 60  # seconds for the page to show something

_screenshots: list[Path] = []


def _requirements() -> tuple[str, str]:
    """Chromium and chromedriver paths; skips (fails under CI=true) when something is missing."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium:
        missing.append("chromium (apt-get install chromium)")
    if not driver:
        missing.append("chromedriver (apt-get install chromium-driver)")
    if missing:
        reason = "browser tests need " + ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI=true, so they may not skip", pytrace=False)
        pytest.skip(reason)
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_notebook(src: Path, dst: Path) -> None:
    """The notebook without its stored outputs, so the page shows only what this run produced."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    dst.write_text(json.dumps(nb, indent=1), encoding="utf-8")


class Lab:
    """A running JupyterLab: its URL and token, its folders, and its REST API."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.home = base / "aihub-home"
        self.tmp = base / "tmp"
        self.port = _free_port()
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = base / "jupyterlab.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        for d in (self.root, self.tmp):
            d.mkdir()
        for nb in NOTEBOOKS:
            _copy_notebook(nb, self.root / nb.name)
        config = self.base / "jupyter-config"
        # No news or update checks: the suite runs offline, and their popup would cover the page.
        # Every cell rendered (no windowing), so the page's text is the whole notebook's.
        settings = config / "lab" / "user-settings" / "@jupyterlab"
        for plugin, values in {
            "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
            "notebook-extension/tracker": {"windowingMode": "none"},
        }.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        # The settings defaults the package installs (share/jupyter/lab/settings/overrides.d), from
        # the repository, where an installed package puts them for JupyterLab.
        app_settings = self.base / "lab-settings"
        shutil.copytree(REPO / "jupyter-config" / "lab" / "settings", app_settings)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "AIHUB_", "OPENAI_"))}
        env.update(
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_DATA_DIR=str(self.base / "jupyter-data"),
            JUPYTER_RUNTIME_DIR=str(self.base / "jupyter-runtime"),
            AIHUB_HOME=str(self.home),
            TMPDIR=str(self.tmp),
            OLLAMA_HOST="http://127.0.0.1:9",  # nothing listens: connect auto picks the demo model
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        )
        env.pop("MPLBACKEND", None)  # the kernel's own inline backend, as for a user
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}", f"--IdentityProvider.token={self.token}",
            f"--LabApp.workspaces_dir={self.base / 'workspaces'}", "--LabApp.news_url=",
            f"--LabApp.app_settings_dir={app_settings}",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.base, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.api("GET", "/api/status")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer in {START_TIMEOUT} s:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.2)

    def api(self, method: str, path: str, body: object = None, timeout: float = 30):
        request = urllib.request.Request(
            self.url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
        return json.loads(data) if data else None

    def create_notebook(self, name: str, cells: list[str]) -> str:
        """A notebook of code cells in the served folder, written through the contents API."""
        nb = {
            "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src, "outputs": [],
                       "execution_count": None} for i, src in enumerate(cells)],
        }
        self.api("PUT", f"/api/contents/{name}", {"type": "notebook", "format": "json", "content": nb})
        return name

    def shutdown_kernels(self) -> None:
        for kernel in self.api("GET", "/api/kernels"):
            try:
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
            except urllib.error.HTTPError:
                pass

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.shutdown_kernels()
        except OSError:
            pass
        self.process.send_signal(signal.SIGTERM)  # the server stops its kernels as it exits
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture(scope="session")
def browser_paths() -> tuple[str, str]:
    return _requirements()


@pytest.fixture(scope="session")
def lab(browser_paths, tmp_path_factory):
    """JupyterLab serving a copy of notebooks/*.ipynb from a throw-away home; stopped at the end."""
    server = Lab(tmp_path_factory.mktemp("lab"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def driver(browser_paths, tmp_path):
    """A fresh headless Chromium (its own profile) for one test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    # Chromium's own scratch folders go to the test's tmp_path too, not to /tmp.
    service = Service(chromedriver, env={**os.environ, "TMPDIR": str(tmp_path)})
    browser = webdriver.Chrome(options=options, service=service)
    browser.set_window_size(1400, 1000)
    try:
        yield browser
    finally:
        browser.quit()


def _screenshot_dir(tmp_path: Path) -> Path:
    path = Path(os.environ.get("AIHUB_SCREENSHOTS") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(lab, driver, request, tmp_path):
    """The browser on JupyterLab, with person-like helpers; a screenshot is saved at the end."""
    p = Page(lab, driver, workspace=re.sub(r"\W+", "-", request.node.name).strip("-"))
    try:
        yield p
    finally:
        name = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
        shot = _screenshot_dir(tmp_path) / f"{name}.png"
        try:
            driver.save_screenshot(str(shot))
            _screenshots.append(shot)
        except Exception as exc:  # a dead browser must not hide the test's own failure
            print(f"no screenshot: {exc}", file=sys.stderr)
        lab.shutdown_kernels()


def pytest_terminal_summary(terminalreporter):
    if _screenshots:
        terminalreporter.write_sep("-", "browser screenshots")
        for shot in _screenshots:
            terminalreporter.write_line(str(shot))


# JavaScript that reads the page as a person sees it
_JS_CELLS = """
return Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')).map(c => ({
  prompt: (c.querySelector('.jp-InputPrompt') || {}).innerText || '',
  source: (c.querySelector('.jp-InputArea-editor') || {}).innerText || '',
  output: (c.querySelector('.jp-OutputArea') || {}).innerText || '',
  errors: Array.from(c.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
               .map(e => e.innerText),  // JupyterLab shows tracebacks and stderr alike, in red
}));
"""


class Page:
    def __init__(self, lab: Lab, driver, workspace: str):
        self.lab = lab
        self.driver = driver
        self.workspace = workspace

    def wait(self, condition, timeout: float = UI_TIMEOUT, message: str = ""):
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.25,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException, IndexError),
                             ).until(lambda d: condition(), message)

    def settle(self, quiet: float = 1.0, timeout: float = UI_TIMEOUT) -> None:
        """Wait until the kernel has been idle for `quiet` seconds (widget state fully synced)."""
        since = [time.monotonic()]

        def quiet_enough():
            if self.kernel_status() != "idle":
                since[0] = time.monotonic()
            return time.monotonic() - since[0] >= quiet

        self.wait(quiet_enough, timeout, "the kernel never went quiet")

    def type_into(self, element, text: str) -> None:
        """Type as a person does, then let the widget send what was typed to the kernel."""
        element.click()
        element.send_keys(text)
        self.settle()

    def css(self, selector: str, root=None):
        from selenium.webdriver.common.by import By

        return (root or self.driver).find_elements(By.CSS_SELECTOR, selector)

    def open(self, path: str) -> None:
        """Open a notebook in a workspace of its own and wait until its kernel is idle."""
        self.driver.get(f"{self.lab.url}/lab/workspaces/{self.workspace}/tree/{path}?token={self.lab.token}")
        self.wait(lambda: self.css(".jp-NotebookPanel .jp-Cell"), message=f"{path} did not open")
        self.wait(self.kernel_ready, message=f"the kernel of {path} did not start")
        # Close the file browser (click its open tab), so the notebook has the whole width.
        for tab in self.css(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current"):
            tab.click()
        self.wait(lambda: not any(e.is_displayed() for e in self.css(".jp-FileBrowser")),
                  message="the file browser did not close")

    def kernel_ready(self) -> bool:
        """The toolbar names a kernel (not "No Kernel") and the page shows it idle."""
        name = self.css(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-kernelName")
        return bool(name) and name[0].text.strip() not in ("", "No Kernel") and self.kernel_status() == "idle"

    def kernel_status(self) -> str:
        status = self.css(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
        return status[0].get_attribute("data-status") if status else ""

    def menu(self, menu: str, label: str) -> None:
        """Click a top menu, then its item `label` (as a person does with the mouse)."""
        bar = [e for e in self.css(".lm-MenuBar-item") if e.text.strip() == menu]
        assert bar, f"no {menu!r} menu"
        bar[0].click()

        def item():
            found = [e for e in self.css(".lm-Menu-item:not(.lm-mod-disabled)")
                     if e.is_displayed() and e.text.split("\n")[0].strip() == label]
            return found[0] if found else None

        self.wait(item, message=f"no {label!r} in the {menu} menu").click()

    def cells(self) -> list[dict]:
        return self.driver.execute_script(_JS_CELLS)

    def run_all(self, timeout: float = RUN_TIMEOUT) -> list[dict]:
        """Run > Run All Cells, then wait until every cell ran (or one failed) and the kernel is idle."""
        self.menu("Run", "Run All Cells")

        def done():
            cells = self.cells()
            if any(c["prompt"].strip() == "[*]:" for c in cells) or self.kernel_status() != "idle":
                return False
            return all(re.fullmatch(r"\[\d+\]:", c["prompt"].strip()) for c in cells) or any(c["errors"] for c in cells)

        from selenium.common.exceptions import TimeoutException

        try:
            self.wait(done, timeout)
        except TimeoutException:
            prompts = " ".join(c["prompt"].strip() or "[?]" for c in self.cells())
            raise AssertionError(f"Run All did not finish in {timeout:g} s (kernel {self.kernel_status()!r}; "
                                 f"prompts {prompts})") from None
        return self.cells()

    def widgets_loaded(self, timeout: float = 30) -> bool:
        """Wait (up to `timeout`) until no output says "Loading widget..."; False if one still does."""
        from selenium.common.exceptions import TimeoutException

        try:
            self.wait(lambda: "Loading widget" not in self.text(), timeout)
            return True
        except TimeoutException:
            return False

    def text(self) -> str:
        """The visible text of the notebook, whitespace collapsed."""
        text = self.driver.execute_script(
            "const n = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');"
            "return n ? n.innerText : '';")
        return " ".join(text.split())

    def scroll_to(self, element, block: str = "center") -> None:
        self.driver.execute_script("arguments[0].scrollIntoView({block: arguments[1]})", element, block)
