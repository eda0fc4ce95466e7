"""The ``tinker-actors`` command: one entry point for the server, the jobs and the REST surface.

``main(argv)`` returns the exit code (see :mod:`tinker_actors.cli._common`).
Every command takes the global options ``--base-url``, ``--api-key``,
``--json``, ``--debug``, ``--data-dir`` and ``--log-level``, before or after
its name. This package is the only place that configures structlog; nothing
imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

import trio

from ._common import (
    DEFAULT_DATA_DIR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Globals,
    UsageError,
    configure_logging,
    exit_code_for,
    fail_line,
    primary_error,
)

__all__ = ["main", "build_parser"]

_COMMANDS_HELP = """\
commands:
  serve         run the local Tinker-compatible server (see `serve --help`)
  demo          start a local server, train, save, sample and sweep; print where the files are
  sweep         run or resume a sampling sweep from a spec file (journaled, resumable)
  train         run or resume a supervised fine-tuning trainer (checkpoints, metrics)
  bench         measure an endpoint: open/closed loop load, compare runs, history
  checkpoints   list, delete, publish, unpublish, ttl, download checkpoints
  runs          list and show training runs
  sessions      list and show sessions
  health        check that the server answers
  capabilities  the models the server can train and sample

exit codes: 0 ok, 1 operation failed, 2 usage error, 3 server unavailable, 130 interrupted
server: --base-url, else $TINKER_BASE_URL, else an embedded local server on --data-dir
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _globals_parser(suppress: bool) -> argparse.ArgumentParser:
    # Added to the main parser and to every subcommand, so global options may
    # come before or after the command name. The subcommands' copies default
    # to SUPPRESS so they never overwrite a value given before the name.
    p = argparse.ArgumentParser(add_help=False)
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    g = p.add_argument_group("global options")
    g.add_argument("--base-url", default=d(None), help="the Tinker endpoint (default: $TINKER_BASE_URL, else an embedded local server)")
    g.add_argument("--api-key", default=d(None), help="API key (default: $TINKER_API_KEY; the local server takes any tml- key)")
    g.add_argument("--json", action="store_true", default=d(False), help="machine-readable output on stdout")
    g.add_argument("--debug", action="store_true", default=d(False), help="debug logs and full tracebacks")
    g.add_argument("--data-dir", type=Path, default=d(None), help=f"data dir of an embedded local server (default: ./{DEFAULT_DATA_DIR})")
    g.add_argument("--log-level", default=d(None), choices=["debug", "info", "warning", "error"], help="log level (default: warning on a terminal, info otherwise)")
    return p


def build_parser() -> argparse.ArgumentParser:
    from . import _jobs, _rest

    common = _globals_parser(suppress=True)
    parser = _Parser(
        prog="tinker-actors",
        description="A trio-native client, job runner and local server for the Tinker training API.",
        epilog=_COMMANDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_globals_parser(suppress=False)],
    )
    from tinker_actors import __version__

    parser.add_argument("--version", action="version", version=f"tinker-actors {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("serve", help="run the local server", add_help=False)
    _jobs.add_parsers(sub, common)
    _rest.add_parsers(sub, common)
    return parser


def _globals(ns: argparse.Namespace) -> Globals:
    data_dir = ns.data_dir or Path(os.environ.get("TINKER_ACTORS_DATA_DIR") or DEFAULT_DATA_DIR)
    return Globals(
        base_url=ns.base_url, api_key=ns.api_key, json=ns.json, debug=ns.debug, data_dir=data_dir, log_level=ns.log_level
    )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # `serve` takes the server's own options; hand it everything after its name.
    positional = [a for a in args if not a.startswith("-")]
    if positional and positional[0] == "serve":
        from tinker_actors.server.cli import main as serve_main

        idx = args.index("serve")
        configure_logging(Globals(base_url=None, api_key=None, json=False, debug="--debug" in args[:idx],
                                  data_dir=DEFAULT_DATA_DIR, log_level=None))
        try:
            return serve_main(args[idx + 1 :])
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    g: Globals | None = None
    try:
        parser = build_parser()
        ns = parser.parse_args(args)
        if ns.command is None:
            parser.print_help()
            return EXIT_USAGE
        g = _globals(ns)
        configure_logging(g)
        return int(trio.run(ns.handler, ns, g))
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    except BaseException as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        err = primary_error(exc)
        code = exit_code_for(err)
        if code == EXIT_INTERRUPTED:
            sys.stderr.write("tinker-actors: interrupted\n")
            return code
        if g is not None and g.debug:
            traceback.print_exception(exc)
        sys.stderr.write(f"tinker-actors: error: {fail_line(err, g)}\n")
        return code if code != EXIT_OK else 1
