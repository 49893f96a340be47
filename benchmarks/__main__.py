"""Run one benchmark: `python -m benchmarks NAME [ARGS...]`.

Each benchmark is a module `benchmarks/NAME.py` with a `main(argv) -> int` function; its own
arguments follow its name (`python -m benchmarks store --help`).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    """The benchmark names: every public module next to this file."""
    here = str(Path(__file__).resolve().parent)
    return sorted(m.name for m in pkgutil.iter_modules([here]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = available()
    usage = f"usage: python -m benchmarks NAME [ARGS...]; NAME is one of: {', '.join(names)}"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"Unknown benchmark {name!r}; valid benchmarks are: {', '.join(names)}.", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__package__ or 'benchmarks'}.{name}")
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
