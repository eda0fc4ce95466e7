"""A request's identity covers its content (issue 10, case 1).

A sweep whose grid or prompts changed under the same ``name`` (new journal,
new results file) must compute new results: before the fix every request
was a replay of the old run's, labelled with the new settings, because the
request key was (name, prompt id, setting index) and the server replays an
idempotency key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support import local_server, server_stats

from tinker_actors.clients import open_service_client
from tinker_actors.jobs.export import read_jsonl
from tinker_actors.jobs.sweep import run_sweep
from tinker_actors.jobs.sweep_spec import load_spec

KEY = "tml-sweep-identity"
N_PROMPTS = 6


def write_spec(d: Path, *, name: str, temperature: list[float], text: str = "prompt", journal: str, results: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{journal}.prompts.jsonl").write_text(
        "".join(json.dumps({"id": f"p{i}", "text": f"{text} {i}:"}) + "\n" for i in range(N_PROMPTS))
    )
    path = d / f"{journal}.toml"
    path.write_text(
        f'[sweep]\nname = "{name}"\n[model]\nbase_model = "tinker-actors/byte-lm-tiny"\n'
        f'[input]\nprompts = "{journal}.prompts.jsonl"\n'
        f"[sampling]\ntemperature = {json.dumps(temperature)}\nseed = [5, 6]\nmax_tokens = 10\n"
        f'[output]\njournal = "{journal}.sqlite"\nresults = "{results}"\n[concurrency]\nmax = 8\n'
    )
    return path


def by_slot(results: str | None) -> dict[tuple[str, float, int], list[list[int]]]:
    """Sampled tokens per (prompt id, temperature, seed): what a user reads off the results."""
    out = {}
    for line in read_jsonl(results or ""):
        assert line.state == "done", line.error
        out[(line.prompt_id, line.setting["temperature"], line.setting["seed"])] = [s.tokens for s in line.sequences or []]
    return out


async def work(url: str) -> int:
    stats: dict[str, Any] = await server_stats(url, KEY)
    return int(stats["work_done"].get("Sample", 0))


async def test_changed_grid_or_prompts_under_the_same_name_compute_new_results(tmp_path: Path) -> None:
    d = tmp_path / "sweeps"
    async with local_server(tmp_path / "server") as url:
        async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as service:
            first = await run_sweep(
                load_spec(write_spec(d, name="same", temperature=[0.0], journal="j1", results="r1.jsonl")), service, progress=False
            )
            assert first.counts["done"] == N_PROMPTS * 2 and await work(url) == N_PROMPTS * 2

            # the temperature grid changed; same name, new journal and results file
            changed_grid = await run_sweep(
                load_spec(write_spec(d, name="same", temperature=[1.5], journal="j2", results="r2.jsonl")), service, progress=False
            )
            assert changed_grid.counts["done"] == N_PROMPTS * 2
            assert await work(url) == N_PROMPTS * 4, "the changed grid must be computed, not replayed"

            # the prompts changed under the same ids; same name and grid as the first run
            changed_prompts = await run_sweep(
                load_spec(write_spec(d, name="same", temperature=[0.0], text="other words", journal="j3", results="r3.jsonl")),
                service, progress=False,
            )
            assert await work(url) == N_PROMPTS * 6, "the changed prompts must be computed, not replayed"

            # the very same sweep again under a new journal is the same requests: answered by replay
            again = await run_sweep(
                load_spec(write_spec(d, name="same", temperature=[0.0], journal="j4", results="r4.jsonl")), service, progress=False
            )
            assert await work(url) == N_PROMPTS * 6
            assert by_slot(again.results) == by_slot(first.results)

    # Each result equals a fresh computation of its own settings on a fresh server.
    async with local_server(tmp_path / "reference-server") as ref_url:
        async with open_service_client(base_url=ref_url, api_key=KEY, telemetry=False) as service:
            ref_grid = await run_sweep(
                load_spec(write_spec(d, name="ref", temperature=[1.5], journal="ref2", results="ref2.jsonl")), service, progress=False
            )
            ref_prompts = await run_sweep(
                load_spec(write_spec(d, name="ref", temperature=[0.0], text="other words", journal="ref3", results="ref3.jsonl")),
                service, progress=False,
            )
    assert by_slot(changed_grid.results) == by_slot(ref_grid.results)
    assert by_slot(changed_prompts.results) == by_slot(ref_prompts.results)
    assert by_slot(changed_grid.results) != {(p, 1.5, s): t for (p, _, s), t in by_slot(first.results).items()}
