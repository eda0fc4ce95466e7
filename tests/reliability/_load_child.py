"""One client process of the load test: N samples at once through the public SamplingClient.

Run as ``python _load_child.py URL KEY N``; prints one JSON line: samples done,
failures by error type, and the client's retry counters.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import trio

from tinker_actors.clients import open_service_client
from tinker_actors.wire import types as wt


async def main(url: str, key: str, n: int) -> None:
    started = time.monotonic()
    failures: Counter[str] = Counter()
    done = 0
    async with open_service_client(base_url=url, api_key=key, telemetry=False) as service:
        sampler = await service.create_sampling_client(base_model="tinker-actors/byte-lm-tiny")
        futures = [
            sampler.sample(wt.ModelInput.from_ints([65 + i % 26, 66]), 1, wt.SamplingParams(max_tokens=4, seed=i))
            for i in range(n)
        ]
        for fut in futures:
            try:
                out = await fut
            except Exception as exc:  # counted and reported: the parent asserts there are none
                failures[f"{type(exc).__name__}: {str(exc)[:200]}"] += 1
            else:
                done += len(out.sequences) == 1
        pools = service.service.statistics().pools
        admission = service.service.statistics().admission
    print(json.dumps({
        "done": done,
        "failures": dict(failures),
        "retries": sum(p.retries for p in pools.values()),
        "rate_limited": admission.rate_limited,
        "seconds": round(time.monotonic() - started, 2),
    }), flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
