"""What a sweep keeps of each result, independent of the client's result types.

The journal stores one :class:`SampleResult` per finished request, encoded as
msgspec JSON. It is built from whatever the sampling client returns through
:func:`result_from_response`, which only reads the attributes the official
``SampleResponse`` has (``sequences[i].tokens / .logprobs / .stop_reason`` and
``prompt_logprobs``), so any client that returns that shape plugs in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

__all__ = ["SequenceResult", "SampleResult", "result_from_response", "SampledSequenceLike", "SampleResponseLike"]


class SequenceResult(msgspec.Struct, frozen=True, kw_only=True):
    tokens: list[int]
    stop_reason: str
    logprobs: list[float] | None = None


class SampleResult(msgspec.Struct, frozen=True, kw_only=True):
    sequences: list[SequenceResult]
    prompt_logprobs: list[float | None] | None = None
    request_id: str | None = None

    @property
    def stop_reasons(self) -> list[str]:
        return [s.stop_reason for s in self.sequences]

    @property
    def num_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.sequences)


class SampledSequenceLike(Protocol):
    @property
    def tokens(self) -> Sequence[int]: ...
    @property
    def logprobs(self) -> Sequence[float] | None: ...
    @property
    def stop_reason(self) -> Any: ...


class SampleResponseLike(Protocol):
    @property
    def sequences(self) -> Sequence[SampledSequenceLike]: ...


def _stop_reason(value: Any) -> str:
    # StopReason is a str enum / Literal in the SDK; keep only its value.
    return str(getattr(value, "value", value))


def result_from_response(response: SampleResponseLike, *, request_id: str | None = None) -> SampleResult:
    """Copy the parts of a sample response a sweep keeps into plain lists."""
    seqs = [
        SequenceResult(
            tokens=[int(t) for t in s.tokens],
            stop_reason=_stop_reason(s.stop_reason),
            logprobs=None if s.logprobs is None else [float(x) for x in s.logprobs],
        )
        for s in response.sequences
    ]
    prompt_lp = getattr(response, "prompt_logprobs", None)
    if prompt_lp is not None:
        # NaN is not JSON; the SDK itself uses None for "not computed".
        prompt_lp = [None if x is None or math.isnan(x) else float(x) for x in prompt_lp]
    return SampleResult(sequences=seqs, prompt_logprobs=prompt_lp, request_id=request_id)
