"""tinker-cookbook's SL and RL loops on the official SDK and on the drop-in, one local server.

::

    python -m benchmarks.cookbook_loops                 # 3 rounds, writes a section of docs/benchmarks.md
    python -m benchmarks.cookbook_loops --rounds 1 --no-write

Each (loop, client) run is a child process that builds the same cookbook
config as docs/cookbook.md and calls the cookbook's own ``train.main``; the
drop-in child calls ``tinker_actors.sdk.install()`` first, the SDK child
does not. The child measures from just before ``train.main`` to just after
(imports excluded): client CPU (user + system of every thread, getrusage)
and wall time, divided by the steps the cookbook logged. The server runs
the real numpy model (the cookbook's loops need real losses), so wall time
includes the server's compute; client CPU is the client's alone. Rounds
alternate which client goes first; the page reports medians and the
drop-in / SDK ratios. Needs the ``cookbook`` extra and tinker-cookbook.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Cookbook loops: official SDK vs drop-in"


def _doc_program(heading: str) -> str:
    text = (ROOT / "docs" / "cookbook.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)[0]


def child(loop: str, client: str, workdir: Path) -> dict[str, Any]:
    """Run one loop in this process (called in the child); its measurements."""
    program = _doc_program("A supervised run" if loop == "sl" else "An RL run")
    if client == "sdk":
        program = program.replace("tinker_actors.sdk.install()", "pass  # the official SDK")
    # time only the training: split the program at its last line (asyncio.run(train.main(config)))
    setup, last = program.rstrip().rsplit("\n", 1)
    assert last.startswith("asyncio.run(train.main(config))"), last
    os.chdir(workdir)
    import types

    module = sys.modules["__bench__"] = types.ModuleType("__bench__")  # chz looks its classes' module up
    scope = module.__dict__
    exec(compile(setup, f"<{loop} setup>", "exec"), scope)
    import asyncio

    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    asyncio.run(scope["train"].main(scope["config"]))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log_dir = workdir / ("sl-run" if loop == "sl" else "rl-run")
    key = "train_mean_nll" if loop == "sl" else "env/all/reward/total"  # rows of training steps
    rows = [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = len({row["step"] for row in rows if key in row})
    return {"loop": loop, "client": client, "steps": steps, "cpu_s": cpu, "wall_s": wall}


def _run_child(loop: str, client: str, base_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"cookbook-{loop}-{client}-") as tmp:
        env = dict(os.environ, TINKER_BASE_URL=base_url, TINKER_API_KEY="tml-bench", TINKER_TELEMETRY="0",
                   HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-m", "benchmarks.cookbook_loops", "--child", loop, client, tmp],
                             env=env, capture_output=True, text=True, cwd=ROOT, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"{loop}/{client} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def _serve(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinker_actors.server", "serve", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"the local server did not start: {line!r}")
    return proc, line.strip().rsplit(" ", 1)[-1]


def measure(rounds: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cookbook-bench-server-") as tmp:
        proc, url = _serve(Path(tmp))
        try:
            for i in range(rounds):
                order = ["sdk", "dropin"] if i % 2 == 0 else ["dropin", "sdk"]
                for loop in ("sl", "rl"):
                    for client in order:
                        r = _run_child(loop, client, url)
                        r["round"] = i
                        results.append(r)
                        print(f"round {i} {loop} {client}: {r['steps']} steps, "
                              f"{1000 * r['cpu_s'] / r['steps']:.1f} ms CPU/step, "
                              f"{1000 * r['wall_s'] / r['steps']:.1f} ms wall/step", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    summary: dict[str, Any] = {}
    for loop in ("sl", "rl"):
        per = {}
        for client in ("sdk", "dropin"):
            runs = [r for r in results if r["loop"] == loop and r["client"] == client]
            per[client] = {
                "cpu_ms_per_step": statistics.median(1000 * r["cpu_s"] / r["steps"] for r in runs),
                "wall_ms_per_step": statistics.median(1000 * r["wall_s"] / r["steps"] for r in runs),
                "steps": runs[0]["steps"],
            }
        per["cpu_ratio"] = per["dropin"]["cpu_ms_per_step"] / per["sdk"]["cpu_ms_per_step"]
        per["wall_ratio"] = per["dropin"]["wall_ms_per_step"] / per["sdk"]["wall_ms_per_step"]
        summary[loop] = per
    return {"rounds": rounds, "runs": results, "summary": summary}


def markdown(data: dict[str, Any], command: str) -> str:
    s = data["summary"]
    def spread(loop: str, client: str, field: str) -> str:
        vals = [1000 * r[field] / r["steps"] for r in data["runs"] if r["loop"] == loop and r["client"] == client]
        return f"{min(vals):.0f}-{max(vals):.0f}"

    rows, ranges = [], []
    for loop, name in (("sl", "supervised.train (role_colon, batch 4)"), ("rl", "rl.train (32 rollouts of 8 tokens)")):
        d = s[loop]
        rows.append(
            f"| {name} | {d['sdk']['steps']} | {d['sdk']['cpu_ms_per_step']:.1f} | {d['dropin']['cpu_ms_per_step']:.1f} "
            f"| **{d['cpu_ratio']:.2f}** | {d['sdk']['wall_ms_per_step']:.1f} | {d['dropin']['wall_ms_per_step']:.1f} "
            f"| **{d['wall_ratio']:.2f}** |"
        )
        ranges.append(f"| {loop.upper()} | {spread(loop, 'sdk', 'cpu_s')} | {spread(loop, 'dropin', 'cpu_s')} "
                      f"| {spread(loop, 'sdk', 'wall_s')} | {spread(loop, 'dropin', 'wall_s')} |")
    return f"""{SECTION}

The unmodified cookbook loops of [cookbook.md](cookbook.md) (same configs), on the
official SDK and on the drop-in (`tinker_actors.sdk`), against one local server with
the real numpy model, {data['rounds']} rounds alternating which client goes first;
medians. Client CPU is user + system time of the client process (all threads) while
`train.main` runs; wall time includes the server's model compute, which both clients
wait for alike. Ratios are drop-in / SDK (below 1: the drop-in costs less).

| loop | steps | SDK CPU ms/step | drop-in CPU ms/step | CPU ratio | SDK wall ms/step | drop-in wall ms/step | wall ratio |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Spread over the rounds (ms/step, min-max): the wall time of one short run moves by tens
of percent on a shared machine; the CPU per step much less.

| loop | SDK CPU | drop-in CPU | SDK wall | drop-in wall |
|---|---|---|---|---|
{chr(10).join(ranges)}

Command: `{command}` (2 cores shared with other work: compare the ratios).
"""


def write_section(text: str) -> None:
    doc = DOC.read_text()
    if SECTION in doc:
        head, rest = doc.split(SECTION, 1)
        tail = rest.split("\n## ", 1)
        doc = head + text + ("\n## " + tail[1] if len(tail) == 2 else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    DOC.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, do not update docs/benchmarks.md")
    parser.add_argument("--from-json", type=Path, help="render a saved results file instead of measuring")
    parser.add_argument("--child", nargs=3, metavar=("LOOP", "CLIENT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        loop, client, workdir = args.child
        if client == "dropin":
            import tinker_actors.sdk

            tinker_actors.sdk.install()
        result = child(loop, client, Path(workdir))
        sys.stdout.flush()
        print(json.dumps(result))
        return 0
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        data = measure(args.rounds)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = ROOT / "benchmarks" / "results" / f"cookbook-{stamp}.json"
        out.write_text(json.dumps(data, indent=2))
    text = markdown(data, f"python -m benchmarks.cookbook_loops --rounds {data['rounds']}")
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
