"""Child process: the local server tuned for benchmarks, on uvicorn.

    python -m benchmarks.serve --port P [--server uvicorn|hypercorn]

Null compute, a short result TTL (so the futures store stays small across a
long run of many clients) and uvicorn, because hypercorn's trio worker tops
out near 1,100 req/s on the 2-core box and would be the bottleneck. uvicorn
picks httptools and uvloop when they are installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server", choices=["uvicorn", "hypercorn"], default="uvicorn")
    # A shorter GIL switch interval lets the server's compute thread hand
    # results back sooner under load (about +20 % at 1,000 in flight here).
    ap.add_argument("--switch-interval", type=float, default=float(os.environ.get("BENCH_SERVER_SWITCH_INTERVAL", "0.005")))
    args = ap.parse_args()
    sys.setswitchinterval(args.switch_interval)

    from tinker_actors.server import ServerConfig, create_app

    with tempfile.TemporaryDirectory(prefix="tinker-bench-") as data_dir:
        config = ServerConfig(host=args.host, port=args.port, null_compute=True,
                              data_dir=data_dir, future_result_ttl_s=20.0)
        if args.server == "hypercorn":
            import trio

            from tinker_actors.server import serve

            trio.run(serve, config)
            return
        import uvicorn

        uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning",
                    lifespan="on", access_log=False, backlog=4096, timeout_keep_alive=120)


if __name__ == "__main__":
    main()
