"""Client CPU per sample request through tinker_actors, optionally profiled.

    python -m benchmarks.profile_sample_path [-n 2000] [-k 100] [--profile none|cprofile|pyinstrument]
                                             [--queued] [--server-url URL]

Starts the benchmark server (null compute, uvicorn) in ANOTHER process unless
``--server-url`` is given, opens one tinker_actors service in this process,
warms up, then runs ``n`` samples with ``k`` worker tasks (or, with
``--queued``, calls ``sample`` ``n`` times at once and then awaits every
future). Reports this process's CPU time per sample (``time.process_time``),
wall time, the server's request counts (polls per future) and, with
``--queued``, the RSS grown per queued request.

``--profile cprofile`` prints the top functions by cumulative and own time;
``--profile pyinstrument`` prints pyinstrument's call tree (needs the
``pyinstrument`` package). Profiling inflates the CPU figure: read the
shares, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import Any

from . import measure
from .clients import common
from .server import LocalServer

API_KEY = "tml-profile-sample-path"


async def _run(url: str, n: int, k: int, queued: bool, profiler: Any) -> dict[str, Any]:
    import trio

    import tinker_actors
    from tinker_actors import wire

    prompt = wire.ModelInput.from_ints(common.PROMPT_TOKENS)
    params = wire.SamplingParams(max_tokens=common.MAX_TOKENS, temperature=1.0)
    out: dict[str, Any] = {}
    async with tinker_actors.open_service(base_url=url, api_key=API_KEY) as service:
        sampler = await service.create_sampling_client(base_model=common.BASE_MODEL)
        # warm-up: open connections, fill caches
        for fut in [sampler.sample(prompt, 1, params) for _ in range(min(k, 200))]:
            await fut
        gc.collect()
        if profiler is not None:
            profiler.start()
        cpu0, t0 = time.process_time(), time.perf_counter()
        if queued:
            rss0 = measure.rss_bytes()
            futs = [sampler.sample(prompt, 1, params) for _ in range(n)]
            out["bytes_per_queued"] = (measure.rss_bytes() - rss0) / n
            for fut in futs:
                await fut
        else:
            it = iter(range(n))

            async def worker() -> None:
                for _ in it:
                    await sampler.sample(prompt, 1, params)

            async with trio.open_nursery() as nursery:
                for _ in range(k):
                    nursery.start_soon(worker)
        cpu1, t1 = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.stop()
    out.update(cpu_us_per_sample=(cpu1 - cpu0) / n * 1e6, wall_s=t1 - t0, per_s=n / (t1 - t0))
    return out


def _other_client(name: str, url: str, n: int, k: int) -> float:
    """CPU µs per sample of another benchmark client, in its own process (benchmarks.clients)."""
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, "-m", "benchmarks.clients", name, "sampling", "--base-url", url,
             "--params", json.dumps({"in_flight": k, "n": n}), "--result", out.name],
            cwd=Path(__file__).resolve().parent.parent, check=True, capture_output=True,
        )
        result = json.loads(Path(out.name).read_text())
    if not result.get("ok"):
        raise RuntimeError(f"{name}: {result.get('error')}")
    return float(result["figures"]["cpu_us_per_request"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=2000, help="samples in the timed phase")
    ap.add_argument("-k", type=int, default=100, help="worker tasks (requests in flight)")
    ap.add_argument("--queued", action="store_true", help="queue all n at once, then await them")
    ap.add_argument("--profile", choices=["none", "cprofile", "pyinstrument"], default="none")
    ap.add_argument("--top", type=int, default=40, help="cProfile rows to print")
    ap.add_argument("--server-url", default=None, help="use a running server instead of starting one")
    ap.add_argument("--compare", action="append", default=[], choices=["floor", "sdk"],
                    help="also run this benchmark client (sampling scenario, same n and k) against the same server")
    args = ap.parse_args()

    import trio

    profiler: Any = None
    if args.profile == "cprofile":
        import cProfile

        profiler = cProfile.Profile()
        profiler.start, profiler.stop = profiler.enable, profiler.disable  # type: ignore[method-assign]
    elif args.profile == "pyinstrument":
        import pyinstrument

        profiler = pyinstrument.Profiler(interval=0.0005, async_mode="disabled")

    def go(url: str, stats: Any) -> dict[str, Any]:
        if stats is not None:
            stats.reset_stats()
        figures = trio.run(_run, url, args.n, args.k, args.queued, profiler)
        if stats is not None:
            s = stats.stats()
            req = s.get("requests", {})
            polls = req.get("retrieve_future", 0) + req.get("retrieve_futures", 0)
            samples = max(1, req.get("asample", 0))
            figures["polls_per_future"] = polls / samples
            figures["server_requests"] = req
        return figures

    if args.server_url:
        figures = go(args.server_url, None)
        for other in args.compare:
            figures[f"{other}_cpu_us_per_sample"] = _other_client(other, args.server_url, args.n, args.k)
    else:
        log = Path("/tmp/profile_sample_path.server.log")
        with LocalServer(log) as srv:
            figures = go(srv.base_url, srv)
            for other in args.compare:
                figures[f"{other}_cpu_us_per_sample"] = _other_client(other, srv.base_url, args.n, args.k)
    for other in args.compare:
        figures[f"ratio_to_{other}"] = figures["cpu_us_per_sample"] / figures[f"{other}_cpu_us_per_sample"]
    for key, value in figures.items():
        print(f"{key:>20}: {value:.1f}" if isinstance(value, float) else f"{key:>20}: {value}")
    if args.profile == "cprofile":
        import pstats

        st = pstats.Stats(profiler)
        st.sort_stats("tottime").print_stats(args.top)
        st.sort_stats("cumulative").print_stats(args.top)
    elif args.profile == "pyinstrument":
        print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
