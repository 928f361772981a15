"""`forge-syncctl`: the console entry point (`forge_syncd.cli.app` does the work)."""

from __future__ import annotations

import sys

from forge_syncd.cli.app import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
