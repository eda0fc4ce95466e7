"""A 5,000-request sweep through seeded faults: 20 % 429, 5 % 5xx, 2 % dropped connections.

The server runs as a subprocess (``--null-compute``, uvicorn) so that the
client and the server each get a core. Faults apply to every route the sweep
uses (submits, polls, session calls). Invariants:

* every request ends ``done`` exactly once in the journal and the results;
* the server did the work of each idempotency key once (``work_done`` equals
  the number of requests; a retried submit was never computed twice);
* no retry storm: submits sent per request stay near the 1 / (1 - fault
  share) a perfect retrier needs, and the AIMD limit ends above its floor.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import trio
from harness import KEY, record, stats, subprocess_server

from tinker_actors.clients import open_service_client
from tinker_actors.jobs.export import read_jsonl
from tinker_actors.jobs.journal import Journal
from tinker_actors.jobs.sweep import run_sweep
from tinker_actors.jobs.sweep_spec import load_spec

N_PROMPTS = 2500  # x 2 seeds = 5,000 requests
FAULTS = {"rate_429": 0.20, "rate_5xx": 0.05, "rate_drop": 0.02}


def write_spec(d: Path, n_prompts: int, *, cmax: int = 128) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "prompts.jsonl", "w") as fh:
        for i in range(n_prompts):
            fh.write(json.dumps({"id": f"p{i}", "tokens": [65 + i % 26, 66, 67]}) + "\n")
    (d / "sweep.toml").write_text(
        '[sweep]\nname = "fault-sweep"\n[model]\nbase_model = "tinker-actors/byte-lm-tiny"\n'
        '[input]\nprompts = "prompts.jsonl"\n'
        "[sampling]\nmax_tokens = 4\nseed = [1, 2]\n"
        '[output]\njournal = "journal.sqlite"\nresults = "results.jsonl"\n'
        f"[concurrency]\nmax = {cmax}\nmin = 4\n"
    )
    return d / "sweep.toml"


async def test_five_thousand_requests_through_faults(tmp_path: Path) -> None:
    expected = N_PROMPTS * 2
    flags = [
        "--null-compute", "--server", "uvicorn", "--fault-seed", "7",
        "--fault-rate-429", str(FAULTS["rate_429"]), "--fault-retry-after", "0.05",
        "--fault-rate-5xx", str(FAULTS["rate_5xx"]), "--fault-rate-drop", str(FAULTS["rate_drop"]),
    ]
    spec = load_spec(write_spec(tmp_path / "sweep", N_PROMPTS))
    started = time.perf_counter()
    with subprocess_server(tmp_path / "server", *flags) as server, trio.fail_after(240):
        async with open_service_client(base_url=server.url, api_key=KEY, telemetry=False) as service:
            outcome = await run_sweep(spec, service, progress=False, log_interval=3600)
            transport = service.service.statistics()
        s = await stats(server.url)
    wall = time.perf_counter() - started

    # nothing lost, nothing twice
    failures = [(line.key, line.error) for line in read_jsonl(outcome.results or "") if line.state != "done"]
    assert outcome.complete and outcome.counts["done"] == expected, (outcome.counts, failures[:5])
    lines = list(read_jsonl(outcome.results or ""))
    assert len(lines) == expected and len({line.key for line in lines}) == expected
    assert all(line.state == "done" and line.sequences for line in lines)
    with Journal.open(spec.journal_path, spec_id=spec.spec_id, spec_hash=spec.spec_hash, readonly=True) as journal:
        assert journal.counts()["done"] == expected
    # the server computed each idempotency key once
    assert s["work_done"]["Sample"] == expected, s["work_done"]
    # faults really happened, at about the configured rates
    injected = s["faults"]
    total = sum(s["requests"].values())
    assert injected["429"] > 0.15 * total and injected["5xx"] > 0.03 * total and injected["drop"] > 0.01 * total
    # no retry storm: a perfect retrier needs 1 / (1 - 0.27) = 1.37 submits per request
    submits = s["requests"]["asample"]
    assert submits < 1.8 * expected, (submits, expected)
    assert outcome.aimd["limit"] >= 4
    # the request status the server answered: nothing else than ok and injected faults
    unexpected = {code: n for code, n in s["statuses"].items() if code not in ("200", "429", "500")}
    assert not unexpected, unexpected
    record(
        "fault_sweep_5000",
        load=f"{expected} sample requests, concurrency <= 128",
        faults={k: injected.get(k, 0) for k in ("429", "5xx", "drop")},
        server_requests=total,
        submits=submits,
        submits_per_request=round(submits / expected, 3),
        sweep_level_retries=sum(line.attempts for line in lines) - expected,
        duplicate_idempotency_keys=s["duplicate_idempotency_keys"],
        work_done=s["work_done"]["Sample"],
        aimd=outcome.aimd,
        statuses=s["statuses"],
        lost=expected - outcome.counts["done"],
        duplicates=s["work_done"]["Sample"] - expected,
        hangs=0,
        wall_s=round(wall, 1),
        poll_stats={"polls": transport.poller.polls, "failed": transport.poller.failed, "timed_out": transport.poller.timed_out},
    )
