"""``tinker-actors serve``: run the local Tinker-compatible server.

``main(argv)`` parses ``serve [options]`` (the leading ``serve`` is optional)
and blocks until interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .config import FaultConfig, ServerConfig
from .tenancy import KeysFileError, load_keys


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinker-actors serve", description="Run the local Tinker-compatible server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start)")
    p.add_argument("--data-dir", type=Path, default=None, help="where checkpoints and metadata live (default: a temp dir removed at exit)")
    p.add_argument("--null-compute", action="store_true", help="skip the math; fixed-shape answers")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--api-key", default=None, help="accept only this key (default: any key starting with tml-)")
    keys.add_argument(
        "--api-keys", type=Path, default=None, metavar="FILE",
        help="accept the keys in FILE (one per line, # comments); with two or more, each key sees only its own "
        "sessions, runs, checkpoints and futures",
    )
    p.add_argument("--server", choices=["hypercorn", "uvicorn"], default="hypercorn")
    p.add_argument("--long-poll-timeout", type=float, default=30.0)
    p.add_argument("--futures-batch-timeout", type=float, default=30.0, help="longest retrieve_futures poll (seconds)")
    p.add_argument(
        "--seq-wait-timeout", type=float, default=120.0,
        help="how long a training request waits for its predecessor seq_id before a 400 (seconds)",
    )
    p.add_argument("--max-body-bytes", type=int, default=64 * 1024 * 1024, help="larger request bodies get 413")
    p.add_argument("--compute-threads", type=int, default=1)
    p.add_argument(
        "--metadata-threshold", type=int, default=64 * 1024,
        help="results above this many bytes are announced with complete_metadata (0: always)",
    )
    p.add_argument("--max-pending-futures", type=int, default=1024,
                   help="with this much queued work, new submits get 429 + Retry-After (0: never)")
    f = p.add_argument_group("fault injection (seeded)")
    f.add_argument("--fault-seed", type=int, default=0)
    f.add_argument("--fault-rate-429", type=float, default=0.0)
    f.add_argument("--fault-retry-after", type=float, default=1.0)
    f.add_argument("--fault-rate-5xx", type=float, default=0.0)
    f.add_argument("--fault-rate-drop", type=float, default=0.0)
    f.add_argument("--fault-status-5xx", type=int, default=500, help="the status of --fault-rate-5xx answers (e.g. 503)")
    f.add_argument("--fault-rate-lost", type=float, default=0.0, help="do the work, then drop the connection")
    f.add_argument("--fault-rate-timeout", type=float, default=0.0, help="do the work, then answer --fault-timeout s late")
    f.add_argument("--fault-timeout", type=float, default=120.0)
    f.add_argument("--fault-rate-410", type=float, default=0.0, help="answer 410 (on retrieve_future: the future is gone)")
    f.add_argument("--fault-max", type=int, default=None, help="inject no request faults after this many")
    f.add_argument("--fault-pause-futures", type=float, default=0.0, help="seconds a future stays queued")
    f.add_argument("--fault-pause-rate", type=float, default=1.0)
    f.add_argument("--fault-pause-kind", choices=["paused_capacity", "paused_rate_limit"], default="paused_capacity")
    f.add_argument("--fault-expire-futures", type=float, default=None, help="finished futures answer 410 after this many seconds")
    f.add_argument("--fault-session-expiry", type=float, default=None, help="sessions expire this long after their last heartbeat")
    f.add_argument("--fault-slow", type=float, default=0.0, help="delay every answer by this many seconds")
    f.add_argument("--fault-routes", default="", help="comma-separated route names the request faults apply to")
    s = p.add_argument_group("feature switches (emulate older servers)")
    for name in ("dynamic-config", "retrieve-futures", "cancel-future", "sessions-routes", "sample-sequence-ids"):
        s.add_argument(f"--no-{name}", action="store_true", help=f"turn off {name}")
    s.add_argument("--sample-use-retrieve-futures", action="store_true", help="tell the SDK to poll with retrieve_futures")
    s.add_argument("--sample-cancel-enabled", action="store_true", help="tell the SDK to send cancel_future (dynamic config)")
    s.add_argument(
        "--client-config", type=_json_object, default={},
        help='extra client/config flags as a JSON object, e.g. \'{"fwdbwd_max_chunk_len": 4}\'',
    )
    s.add_argument("--dynamic-config", type=_json_object, default={}, help="extra client/dynamic_config flags as a JSON object")
    return p


def config_from_args(ns: argparse.Namespace) -> ServerConfig:
    """The ServerConfig the options describe; raises KeysFileError for an unusable keys file."""
    faults = FaultConfig(
        seed=ns.fault_seed,
        rate_429=ns.fault_rate_429,
        retry_after_s=ns.fault_retry_after,
        rate_5xx=ns.fault_rate_5xx,
        rate_drop=ns.fault_rate_drop,
        status_5xx=ns.fault_status_5xx,
        rate_lost=ns.fault_rate_lost,
        rate_timeout=ns.fault_rate_timeout,
        timeout_s=ns.fault_timeout,
        rate_410=ns.fault_rate_410,
        max_faults=ns.fault_max,
        pause_futures_s=ns.fault_pause_futures,
        pause_rate=ns.fault_pause_rate,
        pause_kind=ns.fault_pause_kind,
        expire_futures_s=ns.fault_expire_futures,
        session_expiry_s=ns.fault_session_expiry,
        slow_s=ns.fault_slow,
        routes=[r for r in ns.fault_routes.split(",") if r],
    )
    return ServerConfig(
        host=ns.host,
        port=ns.port,
        data_dir=ns.data_dir,
        api_key=ns.api_key,
        api_keys=load_keys(ns.api_keys) if ns.api_keys is not None else None,
        null_compute=ns.null_compute,
        max_pending_futures=ns.max_pending_futures,
        faults=faults,
        long_poll_timeout_s=ns.long_poll_timeout,
        futures_batch_timeout_s=ns.futures_batch_timeout,
        seq_wait_timeout_s=ns.seq_wait_timeout,
        max_body_bytes=ns.max_body_bytes,
        compute_threads=ns.compute_threads,
        metadata_threshold_bytes=ns.metadata_threshold,
        dynamic_config=not ns.no_dynamic_config,
        retrieve_futures=not ns.no_retrieve_futures,
        cancel_future=not ns.no_cancel_future,
        sessions_routes=not ns.no_sessions_routes,
        sample_sequence_ids=not ns.no_sample_sequence_ids,
        sample_use_retrieve_futures=ns.sample_use_retrieve_futures,
        sample_cancel_enabled=ns.sample_cancel_enabled,
        client_config_overrides=ns.client_config,
        dynamic_config_overrides=ns.dynamic_config,
    )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        args = args[1:]
    ns = build_parser().parse_args(args)
    try:
        config = config_from_args(ns)
    except KeysFileError as exc:  # its message names the file and line, never a key
        print(f"tinker-actors serve: {exc}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        # the server is an application: its errors (logged 500s, crashed jobs)
        # go to stderr unless the embedding program routed logging elsewhere
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if ns.server == "uvicorn":
        try:
            import uvicorn  # noqa: F401  (optional: the bench and test extras carry it)
        except ImportError:
            print("tinker-actors serve: --server uvicorn needs uvicorn (pip install 'tinker_actors[bench]')", file=sys.stderr)
            return 2
        from .serve import serve_uvicorn

        print(f"tinker-actors local server on http://{config.host}:{config.port} (uvicorn)", flush=True)
        serve_uvicorn(config)
        return 0
    import trio

    from .serve import serve

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, config)
            print(f"tinker-actors local server on http://{config.host}:{port}", flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass
    return 0
