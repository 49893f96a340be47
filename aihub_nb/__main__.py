"""`python -m aihub_nb lab` (or `aihub-lab`): JupyterLab on the quickstart, in a folder of your own.

The shipped notebooks (quickstart, agents, monitoring, batch, multimodal, from the notebooks/
folder of the source tree) are copied into `~/aihub-notebooks` (or `$AIHUB_NOTEBOOKS`), each only when it is not there
yet, so your changes to them are kept; JupyterLab is rooted in that folder and opens the quickstart.
Your own notebooks go there too, away from the repository and its tests. Other arguments go to
`jupyter lab` (`--port 8899`, `--no-browser`); `--allow-root` is added when run as root.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

SHIPPED = ("quickstart.ipynb", "agents.ipynb", "monitoring.ipynb", "batch.ipynb", "multimodal.ipynb")


def workspace() -> Path:
    """Where the notebooks are opened from: $AIHUB_NOTEBOOKS, else ~/aihub-notebooks."""
    env = os.environ.get("AIHUB_NOTEBOOKS")
    return Path(env).expanduser() if env else Path.home() / "aihub-notebooks"


def copy_notebooks(target: Path | None = None, source: Path | None = None) -> list[Path]:
    """Copy the shipped notebooks that are missing into `target` (default: workspace()); the copies."""
    target = target or workspace()
    source = source or Path(__file__).resolve().parent.parent / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in SHIPPED:
        if (source / name).is_file() and not (target / name).exists():
            shutil.copyfile(source / name, target / name)
            copied.append(target / name)
    return copied


_LAB_SETTINGS = Path("share") / "jupyter" / "lab" / "settings" / "overrides.d" / "aihub_nb.json"


def install_lab_settings(prefix: Path | None = None, source: Path | None = None) -> Path | None:
    """Put aihub_nb's JupyterLab settings default (widget state saved with the notebook, so a saved
    panel shows after a restart) where JupyterLab reads it: a regular install ships it there, an
    editable one (`pip install -e`) does not. Returns the file written, or None if it was there."""
    target = (prefix or Path(sys.prefix)) / _LAB_SETTINGS
    source = source or Path(__file__).resolve().parent.parent / "jupyter-config" / "lab" / "settings" / "overrides.d" / "aihub_nb.json"
    if target.exists() or not source.is_file():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def lab_command(argv: list[str], folder: Path) -> list[str]:
    """The `jupyter lab` command line: rooted in `folder`, opening its quickstart."""
    command = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={folder}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in argv:
        command.append("--allow-root")  # JupyterLab refuses to start as root without it
    opened = "quickstart.ipynb" if (folder / "quickstart.ipynb").exists() else None
    return command + list(argv) + ([opened] if opened else [])


def lab(argv: list[str] | None = None) -> None:
    """Copy the notebooks if missing, then replace this process with JupyterLab."""
    argv = sys.argv[1:] if argv is None else argv
    folder = workspace()
    for path in copy_notebooks(folder):
        print(f"aihub_nb: copied {path.name} to {folder}", flush=True)
    try:
        install_lab_settings()
    except OSError as exc:  # a read-only prefix: panels in saved notebooks then need the setting by hand
        print(f"aihub_nb: could not install the JupyterLab settings default ({exc}); see README, Panels", flush=True)
    command = lab_command(argv, folder)
    os.execv(command[0], command)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "lab":
        sys.exit("usage: python -m aihub_nb lab [jupyter lab options]  (JupyterLab on the quickstart, in ~/aihub-notebooks)")
    lab(argv[1:])


if __name__ == "__main__":
    main()
