"""The operations of a workload, issued with tinker_actors' own clients.

A *target* turns "operation number i of the workload's mix" into one awaitable
request. :class:`ClientTarget` does it with a ``ServiceClient``; the harness in
``benchmarks/`` has targets for the official SDK and for raw HTTP, so all three
are driven by the same scheduler and measured the same way.

Every call returns the client's future at once (``sample``, ``compute_logprobs``,
``forward_backward`` + ``optim_step``, ``save_state``); the scheduler awaits
it. Request bodies are drawn from the workload's distributions with a seeded
generator, so two runs of one workload send the same requests.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Protocol

import numpy as np

from tinker_actors.wire import types as wt

from .workload import OpSpec, Workload, read_prompts

__all__ = ["Target", "ClientTarget", "Steps"]


class Target(Protocol):
    async def setup(self) -> None:
        """Create sessions, clients and anything else before the clock starts."""

    def issue(self, op: int) -> Any:
        """Start operation ``op`` (an index into ``workload.ops``); an awaitable of its result."""


class Steps:
    """Several futures awaited in order as one operation (forward_backward + optim_step).

    ``state`` and ``request_id`` are those of the first future not yet done,
    so the recorder sees where the operation is.
    """

    __slots__ = ("futures",)

    def __init__(self, *futures: Any) -> None:
        self.futures = futures

    def _current(self) -> Any:
        for f in self.futures:
            if not f.done():
                return f
        return self.futures[-1]

    @property
    def state(self) -> Any:
        return self._current().state

    @property
    def request_id(self) -> Any:
        return self._current().request_id

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        out = None
        for f in self.futures:
            out = await f
        return out


class _Prompts:
    """Prompt token lists and max_tokens for one op: drawn lengths, or lines of a JSONL file."""

    def __init__(self, op: OpSpec, where: str, tokenizer: Any, rng: np.random.Generator) -> None:
        self.op = op
        self.rng = rng
        self.prompt_len = op.length("prompt_len")
        self.output_len = op.length("output_len")
        self.lines: list[tuple[list[int], int | None]] | None = None
        if op.prompts:
            lines = []
            for obj in read_prompts(op.prompts, where):
                if "tokens" in obj:
                    tokens = [int(t) for t in obj["tokens"]]
                else:
                    tokens = list(tokenizer.encode(obj["prompt"]))
                lines.append((tokens, obj.get("max_tokens")))
            self.lines = lines

    def draw(self) -> tuple[list[int], int]:
        if self.lines is not None:
            tokens, max_tokens = self.lines[int(self.rng.integers(len(self.lines)))]
            return tokens, max_tokens or self.output_len.draw(self.rng)
        n = self.prompt_len.draw(self.rng)
        # byte-range ids are valid in every vocabulary
        return self.rng.integers(1, 256, n).tolist(), self.output_len.draw(self.rng)


class ClientTarget:
    """The workload's operations on a tinker_actors ``ServiceClient``."""

    def __init__(self, service: Any, workload: Workload) -> None:
        self.service = service
        self.workload = workload
        self.rng = np.random.default_rng(workload.seed + 1)
        self._samplers: dict[str, Any] = {}
        self._trainers: dict[str, Any] = {}
        self._prompts: list[_Prompts | None] = []
        self._adam: list[wt.AdamParams] = []
        self._saves = 0

    async def setup(self) -> None:
        wl = self.workload
        for op in wl.ops:
            model = wl.model_of(op)
            if op.kind in ("sample", "compute_logprobs") and model not in self._samplers:
                self._samplers[model] = await self.service.create_sampling_client(base_model=model)
            if op.kind in ("train_step", "save") and model not in self._trainers:
                self._trainers[model] = await self.service.create_lora_training_client(model, rank=op.rank, seed=wl.seed)
        for i, op in enumerate(wl.ops):
            model = wl.model_of(op)
            if op.kind in ("sample", "compute_logprobs"):
                sampler = self._samplers[model]
                tokenizer = sampler.get_tokenizer() if op.prompts else None
                self._prompts.append(_Prompts(op, f"{wl.source or 'workload'}: ops[{i}]", tokenizer, self.rng))
            else:
                self._prompts.append(None)
            self._adam.append(wt.AdamParams(learning_rate=op.learning_rate))

    def issue(self, i: int) -> Any:
        op = self.workload.ops[i]
        model = self.workload.model_of(op)
        if op.kind == "sample":
            prompts = self._prompts[i]
            assert prompts is not None
            tokens, max_tokens = prompts.draw()
            params = wt.SamplingParams(max_tokens=max_tokens, temperature=op.temperature, top_p=op.top_p,
                                       seed=int(self.rng.integers(2**31)))
            return self._samplers[model].sample(wt.ModelInput.from_ints(tokens), op.num_samples, params)
        if op.kind == "compute_logprobs":
            prompts = self._prompts[i]
            assert prompts is not None
            tokens, _ = prompts.draw()
            return self._samplers[model].compute_logprobs(wt.ModelInput.from_ints(tokens))
        training = self._trainers[model]
        if op.kind == "save":
            self._saves += 1
            return training.save_state(f"bench-{self._saves}", ttl_seconds=3600)
        batch = [_datum(self.rng.integers(1, 256, op.seq_len + 1).tolist()) for _ in range(op.batch_size)]
        return Steps(training.forward_backward(batch, "cross_entropy"), training.optim_step(self._adam[i]))


def _datum(tokens: list[int]) -> wt.Datum:
    n = len(tokens) - 1
    return wt.Datum(
        model_input=wt.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * n},
    )
