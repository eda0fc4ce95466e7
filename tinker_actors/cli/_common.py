"""What every ``tinker-actors`` command shares: global options, logging, exit codes, output, connecting.

Exit codes (documented in docs/cli.md):

====  =====================================================================
0     the operation succeeded
1     the operation failed (the server refused it, a request failed, ...)
2     usage error: bad arguments, a bad spec or config file
3     no server: connection refused or dropped, timeouts, 5xx answers
130   interrupted (SIGINT / SIGTERM); a sweep or trainer resumes from here
====  =====================================================================
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog
import trio
from rich.console import Console

from tinker_actors._log import ROOT as LOG_ROOT
from tinker_actors._log import get_logger
from tinker_actors.errors import (
    APIConnectionError,
    ConfigError,
    InternalServerError,
    TinkerActorsError,
    ValidationError,
    redact,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_LOCAL_KEY = "tml-local"
DEFAULT_DATA_DIR = Path("tinker-data")

log = get_logger(__name__)


class UsageError(Exception):
    """A command was called wrongly (exit code 2)."""


@dataclass
class Globals:
    base_url: str | None
    api_key: str | None
    json: bool
    debug: bool
    data_dir: Path
    log_level: str | None
    # Off a terminal rich would wrap tables at 80 columns; scripts and logs want them whole.
    stdout: Console = field(default_factory=lambda: Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200))
    stderr: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))
    embedded: bool = False  # set when the command started the local server itself

    @property
    def remote_url(self) -> str | None:
        return self.base_url or os.environ.get("TINKER_BASE_URL") or None

    @property
    def key(self) -> str:
        return self.api_key or os.environ.get("TINKER_API_KEY") or DEFAULT_LOCAL_KEY

    def emit(self, data: Any, human: Callable[[Console], None] | None = None) -> None:
        """Print ``data`` as JSON (``--json``) or through ``human`` (default: pretty JSON)."""
        if self.json or human is None:
            sys.stdout.write(json.dumps(to_jsonable(data), indent=None if self.json else 2, default=str) + "\n")
            sys.stdout.flush()
        else:
            human(self.stdout)

    def note(self, text: str) -> None:
        """A human hint on stderr (never part of --json output)."""
        if not self.json:
            self.stderr.print(text, highlight=False)


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ------------------------------------------------------------------ logging


def configure_logging(g: Globals) -> None:
    """Logging for the whole process: readable on a terminal, JSON lines otherwise (stderr).

    The CLI is an application: it configures structlog for the stdlib recipe and puts
    one ``ProcessorFormatter`` handler on the root logger, so the library's events and
    other libraries' records (httpx, hypercorn) are rendered alike. ``tinker_actors``
    loggers log at the chosen level; other libraries only from WARNING up.
    """
    terminal = sys.stderr.isatty()
    level_name = g.log_level or ("debug" if g.debug else ("warning" if terminal else "info"))
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise UsageError(f"unknown log level {level_name!r}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso" if not terminal else "%H:%M:%S", utc=not terminal),
    ]
    renderer: list[Any] = (
        [structlog.dev.ConsoleRenderer(colors=True)]
        if terminal
        else [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(default=str)]
    )
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING))
    logging.getLogger(LOG_ROOT).setLevel(level)


# ------------------------------------------------------------------ errors


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def primary_error(exc: BaseException) -> BaseException:
    """The one error worth reporting out of a (possibly nested) exception group."""
    leaves = [e for e in _leaves(exc) if not isinstance(e, trio.Cancelled)]
    for e in leaves:
        if isinstance(e, KeyboardInterrupt):
            return e
    return leaves[0] if leaves else exc


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, (UsageError, ConfigError, ValidationError)):
        return EXIT_USAGE
    if isinstance(exc, (APIConnectionError, InternalServerError)):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


def describe(exc: BaseException) -> str:
    if isinstance(exc, APIConnectionError):
        return f"cannot reach the server: {exc}"
    if isinstance(exc, TinkerActorsError) or isinstance(exc, (UsageError, OSError)):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"


# ------------------------------------------------------------------ running


async def run_job(job: Callable[[trio.Event], Awaitable[int]], *, graceful: bool) -> int:
    """Run ``job(stop)`` with SIGINT/SIGTERM handled.

    ``graceful`` jobs get ``stop`` set on the first signal and are cancelled
    on the second; others are cancelled on the first. Either way the exit
    code is 130.
    """
    stop = trio.Event()
    signals = 0
    rc = EXIT_INTERRUPTED
    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            nonlocal signals
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                async for signum in received:
                    signals += 1
                    log.warning("signal_received", signal=signal.Signals(signum).name, count=signals)
                    stop.set()
                    if signals > 1 or not graceful:
                        scope.cancel()

        nursery.start_soon(watch)
        with scope:
            rc = await job(stop)
        nursery.cancel_scope.cancel()
    if scope.cancelled_caught:
        return EXIT_INTERRUPTED
    return rc


# ------------------------------------------------------------------ connecting


async def _serve_quietly(cfg: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    from tinker_actors.server import serve

    try:
        await serve(cfg, task_status=task_status)
    except BaseException as exc:
        # The server's teardown can fail once we cancel it (a socket closed
        # twice). Only failures while it was running matter to the user.
        # Swallowing Cancelled here is safe: the only canceller is our own
        # nursery, whose scope is already cancelled.
        if all(isinstance(e, (trio.Cancelled, OSError)) or type(e).__name__ == "LifespanFailureError" for e in _leaves(exc)):
            return
        raise


@contextlib.asynccontextmanager
async def embedded_server(data_dir: Path, **config: Any) -> AsyncIterator[str]:
    """The local server in this process for the block; yields its base URL."""
    from tinker_actors.server import ServerConfig

    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = ServerConfig(host="127.0.0.1", port=0, data_dir=data_dir, **config)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve_quietly, cfg)
        url = f"http://127.0.0.1:{port}"
        log.info("local_server_started", base_url=url, data_dir=str(data_dir))
        try:
            yield url
        finally:
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def base_url_for(g: Globals) -> AsyncIterator[str]:
    """The configured server, or the embedded local server on ``g.data_dir``."""
    if g.remote_url:
        yield g.remote_url
        return
    g.embedded = True
    g.note(f"no --base-url or TINKER_BASE_URL: using the embedded local server (data in {g.data_dir}/)")
    async with embedded_server(g.data_dir) as url:
        yield url


@contextlib.asynccontextmanager
async def connect(g: Globals, **config: Any) -> AsyncIterator[Any]:
    """A ServiceClient on the configured (or embedded) server."""
    from tinker_actors.clients import open_service_client

    async with base_url_for(g) as url:
        if g.embedded:
            config.setdefault("telemetry", False)
        else:
            await probe(url)
        async with open_service_client(base_url=url, api_key=g.key, **config) as service:
            yield service


async def probe(url: str, *, timeout: float = 10.0) -> None:
    """Fail fast (exit 3) when nothing answers at ``url``.

    The runtime retries connection errors with backoff for up to minutes,
    which is right for a job whose server blips and wrong for a command
    pointed at a server that is not there. Any HTTP answer passes.
    """
    import httpx

    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            await http.get(f"{url.rstrip('/')}/api/v1/healthz")
    except httpx.TransportError as exc:
        raise APIConnectionError(str(exc) or type(exc).__name__, endpoint=f"GET {url}/api/v1/healthz") from None


def fail_line(exc: BaseException, g: Globals | None) -> str:
    key = g.key if g is not None else None
    return redact(describe(exc), key)
