"""A sweep-shaped writer for the crash tests; run as a subprocess and SIGKILLed.

argv: journal path, side-log path, number of requests, self-kill op (-1: never).
Before each send it appends "send <key>" to the side log, after each committed
result "done <key>"; it prints the op count after every journal write so the
parent can kill it at an arbitrary moment.
"""

from __future__ import annotations

import os
import signal
import sys

from tinker_actors.jobs.journal import Journal
from tinker_actors.jobs.records import SampleResult, SequenceResult
from tinker_actors.jobs.sweep_spec import (
    ModelRef,
    Prompt,
    SamplingSetting,
    SweepRequest,
    idempotency_key,
    request_content,
    request_key,
)

SPEC_ID, SPEC_HASH = "crash-test", "f" * 64


def requests(n: int) -> list[SweepRequest]:
    setting = SamplingSetting(index=0, max_tokens=8)
    out = []
    for i in range(n):
        prompt = Prompt(id=f"p{i}", line=i + 1, text=f"prompt {i}")
        content = request_content(ModelRef(base_model="m"), prompt, setting, {})
        key = request_key(SPEC_ID, prompt.id, content)
        out.append(SweepRequest(key=key, idempotency_key=idempotency_key(key), prompt=prompt, setting=setting, content=content))
    return out


def result_for(key: str) -> SampleResult:
    seed = int(key[:8], 16)
    n = 1 + seed % 300  # results of different sizes, some spanning pages
    return SampleResult(
        sequences=[SequenceResult(tokens=[(seed + j) % 50_000 for j in range(n)], stop_reason="length", logprobs=[-(j % 7) / 3 for j in range(n)])],
        request_id=f"req-{key[:8]}",
    )


def main() -> None:
    path, side, n, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    log = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    ops = 0

    def tick() -> None:
        nonlocal ops
        ops += 1
        print(ops, flush=True)
        if ops == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    with Journal.open(path, spec_id=SPEC_ID, spec_hash=SPEC_HASH) as journal:
        journal.plan(requests(n))
        tick()
        batch: list[str] = []
        for row in journal.pending():
            os.write(log, f"send {row.key}\n".encode())
            journal.mark_sent(row.key, request_id=f"req-{row.key[:8]}")
            tick()
            batch.append(row.key)
            # results land in groups of up to 3 in one transaction, so kills
            # also hit the middle of a multi-row commit
            if len(batch) == 3 or row.key[0] in "01234567":
                with journal.transaction():
                    for key in batch:
                        journal.record_result(key, result_for(key), latency_s=0.25)
                        tick()
                for key in batch:
                    os.write(log, f"done {key}\n".encode())
                batch.clear()
        with journal.transaction():
            for key in batch:
                journal.record_result(key, result_for(key), latency_s=0.25)
        for key in batch:
            os.write(log, f"done {key}\n".encode())
    print("finished", flush=True)


if __name__ == "__main__":
    main()
