"""Benchmarks, each run as `python -m bench.NAME` (README, "Benchmarks").

Each starts by `as_installed()`: the forge-syncd processes it times load compiled bytecode,
as an installed package's do (the .deb ships it, pip compiles it at install). A checkout
run with PYTHONDONTWRITEBYTECODE=1 (as this project's machines set it) would otherwise
compile ~120 modules from source at every process start: ~0.15-0.2 s of each `--once`."""

from __future__ import annotations

import compileall
from pathlib import Path

import forge_syncd


def as_installed() -> None:
    """Compile forge-syncd's modules to bytecode where it is not there or stale (the
    __pycache__ folders beside them; git ignores them)."""
    compileall.compile_dir(Path(forge_syncd.__file__).parent, quiet=1, workers=0)
