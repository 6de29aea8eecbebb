"""Run one `pocket` command in a fresh interpreter and see which modules it imported.

Start-up cost is what one-shot commands are measured by (tests/unit/test_cli_imports.py,
the migrate copy's tests): the command runs for real, and `sys.modules` at its end is
the answer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_RUN = """
import json, runpy, sys
sys.argv = ["pocket"] + json.loads(sys.argv[1])
try:
    runpy.run_module("cli", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
with open(OUT, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def run_pocket(out: Path, args: list[str], env: dict | None = None,
               timeout: float = 120) -> tuple[subprocess.CompletedProcess, int, set[str]]:
    """(the finished process, the command's exit code, the modules it imported); `out` is a
    scratch file for the list."""
    script = f"OUT = {str(out)!r}\n" + _RUN
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(list(args))], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env if env is not None else dict(os.environ))
    seen = json.loads(out.read_text())
    return proc, seen["code"], set(seen["modules"])


def loaded(modules: set[str], *packages: str) -> list[str]:
    """The modules of `packages` (and their submodules) among `modules`."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))
