"""`%load_ext aihub_nb` and `import aihub_nb`: what they cost a notebook, in fresh processes.

    python -m benchmarks extension [--runs 15]

Each measurement runs in a new Python process (imports are cached per process), interleaved with
its baseline from the same run: loading IPython's own `autoreload` extension, and importing the
standard library's `sqlite3`. Loading the extension must not open the store or import openai, ollama,
pandas, matplotlib or ipywidgets: the hub opens on the first %aihub command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

_LOAD = r"""
import json, os, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
t = time.perf_counter()
shell.run_line_magic("load_ext", sys.argv[1])
elapsed = (time.perf_counter() - t) * 1000
heavy = sorted(m for m in ("openai", "ollama", "pandas", "matplotlib", "ipywidgets", "sqlite_utils") if m in sys.modules)
print(json.dumps({"ms": elapsed, "heavy": heavy}))
"""

_IMPORT = r"""
import sys, time
t = time.perf_counter()
__import__(sys.argv[1])
elapsed = (time.perf_counter() - t) * 1000
print('{"ms": %r, "heavy": []}' % elapsed)
"""


def _measure(script: str, target: str, home: str) -> dict:
    env = {"AIHUB_HOME": home, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script, target], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks extension", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    home = tempfile.mkdtemp(prefix="aihub-bench-ext-")
    pairs = [
        ("%load_ext aihub_nb", _LOAD, "aihub_nb", "%load_ext autoreload", "autoreload"),
        ("import aihub_nb", _IMPORT, "aihub_nb", "import sqlite3", "sqlite3"),
    ]
    print(f"{'measure':22} {'median ms':>10} {'baseline':>22} {'median ms':>10} {'ratio':>7}  heavy modules loaded")
    for label, script, target, base_label, base_target in pairs:
        ours, base, heavy = [], [], set()
        for _ in range(args.runs):
            result = _measure(script, target, home)
            ours.append(result["ms"])
            heavy.update(result["heavy"])
            base.append(_measure(script, base_target, home)["ms"])
        m, b = statistics.median(ours), statistics.median(base)
        print(f"{label:22} {m:10.2f} {base_label:>22} {b:10.2f} {m / b:7.2f}  {', '.join(sorted(heavy)) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
