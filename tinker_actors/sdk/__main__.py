"""``python -m tinker_actors.sdk program.py [args]``: run an unmodified SDK program on the drop-in.

``python -m tinker_actors.sdk -m package.module [args]`` runs a module the
same way. ``import tinker`` inside the program gives :mod:`tinker_actors.sdk`.
"""

from __future__ import annotations

import os
import runpy
import sys

from ._install import install

USAGE = "usage: python -m tinker_actors.sdk (program.py | -m module) [args...]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    install()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        # as `python program.py` does: the program's folder comes first on the path
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
