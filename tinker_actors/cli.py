"""The ``tinker-actors`` command (placeholder until the CLI lands)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print("tinker-actors: commands are being built; got", args)
    return 0
