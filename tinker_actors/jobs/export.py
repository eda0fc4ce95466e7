"""Sweep results out of the journal: a JSONL file and a summary.

One line per request, in the journal's plan order::

    {"key", "prompt_id", "setting": {...}, "state": "done"|"failed",
     "attempts", "request_id", "latency_s", "stop_reasons",
     "sequences": [{"tokens", "text"?, "logprobs", "stop_reason"}],
     "prompt_logprobs", "error"}

``text`` is present when a tokenizer ``decode`` callable is given. The file
is written to a temporary name and renamed into place, so a crash during
export never leaves a half-written results file behind the old one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .journal import JournalRow
from .stats import summarize_latencies

__all__ = ["ExportLine", "ExportSequence", "export_jsonl", "read_jsonl", "summarize"]

Decode = Callable[[Sequence[int]], str]


class ExportSequence(msgspec.Struct, kw_only=True, omit_defaults=True):
    tokens: list[int]
    stop_reason: str
    logprobs: list[float] | None = None
    text: str | None = None


class ExportLine(msgspec.Struct, kw_only=True):
    key: str
    prompt_id: str
    setting: dict[str, Any]
    state: str
    attempts: int
    request_id: str | None = None
    latency_s: float | None = None
    stop_reasons: list[str] | None = None
    sequences: list[ExportSequence] | None = None
    prompt_logprobs: list[float | None] | None = None
    error: str | None = None


def _line(row: JournalRow, setting: Mapping[str, Any], decode: Decode | None) -> ExportLine:
    seqs = None
    prompt_lp = None
    if row.result is not None:
        seqs = [
            ExportSequence(
                tokens=s.tokens,
                stop_reason=s.stop_reason,
                logprobs=s.logprobs,
                text=decode(s.tokens) if decode is not None else None,
            )
            for s in row.result.sequences
        ]
        prompt_lp = row.result.prompt_logprobs
    return ExportLine(
        key=row.key,
        prompt_id=row.prompt_id,
        setting=dict(setting),
        state=row.state,
        attempts=row.attempts,
        request_id=row.request_id,
        latency_s=row.latency_s,
        stop_reasons=row.stop_reasons,
        sequences=seqs,
        prompt_logprobs=prompt_lp,
        error=row.error,
    )


def export_jsonl(
    rows: Iterable[JournalRow],
    path: str | Path,
    *,
    settings: Sequence[Mapping[str, Any]] | Mapping[int, Mapping[str, Any]] = (),
    decode: Decode | None = None,
) -> dict[str, Any]:
    """Write ``rows`` (usually ``journal.results()``) to ``path``; return :func:`summarize`.

    ``settings`` maps a setting index to its description (``SamplingSetting.as_dict()``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    by_index = dict(settings) if isinstance(settings, Mapping) else dict(enumerate(settings))
    enc = msgspec.json.Encoder()
    buf = bytearray()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    acc = _Summary()
    with open(tmp, "wb") as fh:
        for row in rows:
            line = _line(row, by_index.get(row.setting_index, {"index": row.setting_index}), decode)
            enc.encode_into(line, buf)
            buf.extend(b"\n")
            fh.write(buf)
            acc.add(row)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return acc.result()


def read_jsonl(path: str | Path) -> Iterator[ExportLine]:
    dec = msgspec.json.Decoder(ExportLine)
    with open(path, "rb") as fh:
        for raw in fh:
            if raw.strip():
                yield dec.decode(raw)


def summarize(rows: Iterable[JournalRow]) -> dict[str, Any]:
    """Counts, latency percentiles and generated tokens per second.

    Throughput is total generated tokens over the wall-clock span from the
    first send to the last finish (not the sum of latencies, which overlap).
    """
    acc = _Summary()
    for row in rows:
        acc.add(row)
    return acc.result()


class _Summary:
    # Keeps only numbers, so a million-row export does not hold every result.
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.latencies: list[float] = []
        self.tokens = 0
        self.first_sent = math.inf
        self.last_done = -math.inf

    def add(self, row: JournalRow) -> None:
        self.counts[row.state] = self.counts.get(row.state, 0) + 1
        if row.state != "done":
            return
        if row.latency_s is not None:
            self.latencies.append(row.latency_s)
        if row.result is not None:
            self.tokens += row.result.num_tokens
        if row.sent_at is not None:
            self.first_sent = min(self.first_sent, row.sent_at)
        if row.finished_at is not None:
            self.last_done = max(self.last_done, row.finished_at)

    def result(self) -> dict[str, Any]:
        span = self.last_done - self.first_sent if self.last_done > self.first_sent else None
        return {
            "counts": dict(sorted(self.counts.items())),
            "latency_s": summarize_latencies(self.latencies),
            "generated_tokens": self.tokens,
            "wall_s": span,
            "tokens_per_s": self.tokens / span if span else None,
            "requests_per_s": self.counts.get("done", 0) / span if span else None,
        }
