"""One scenario (train, sample, save/load, resume, REST, errors) written against the SDK's API.

:func:`run` takes the ``tinker`` module to use (the official SDK, or the
drop-in ``tinker_actors.sdk``) and returns plain values (numbers, lists,
strings, exception class names), with the ids that differ from run to run
replaced by their role, so two runs compare field by field.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

BASE = "tinker-actors/byte-lm-tiny"
TEXT = b"the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat. "


def _datum(tinker: Any, tokens: list[int]) -> Any:
    return tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": np.asarray(tokens[1:], dtype=np.int64),
                        "weights": np.ones(len(tokens) - 1, dtype=np.float32)},
    )


def _error(fn: Any) -> str:
    try:
        fn()
    except Exception as exc:  # the class is what is compared
        return type(exc).__name__
    return "no error"


def run(tinker: Any, base_url: str) -> dict[str, Any]:
    tokens = list(TEXT * 2)
    batch = [_datum(tinker, tokens[i:i + 40]) for i in range(0, 120, 30)]
    adam = tinker.AdamParams(learning_rate=1e-2)
    out: dict[str, Any] = {}
    with tinker.ServiceClient(base_url=base_url) as service:
        training = service.create_lora_training_client(base_model=BASE, rank=8, seed=7).result()
        run_id = training.model_id
        info = training.get_info()
        out["info"] = (info.model_data.model_name, info.lora_rank)

        losses, logprobs = [], []
        for _ in range(4):
            fb = training.forward_backward(batch, "cross_entropy")
            step = training.optim_step(adam)
            result = fb.result()
            losses.append(result.metrics["loss:sum"])
            logprobs.append(result.loss_fn_outputs[0]["logprobs"].tolist())
            out.setdefault("optim_metrics", sorted(step.result().metrics or {}))
        out["losses"], out["logprobs"] = losses, logprobs
        out["output_keys"] = sorted(result.loss_fn_outputs[0])
        out["output_dtype"] = result.loss_fn_outputs[0]["logprobs"].dtype
        out["forward_loss"] = training.forward(batch, "cross_entropy").result().metrics["loss:sum"]

        state = training.save_state("s1").result().path
        sampler_path = training.save_weights_for_sampler("w1").result().path
        out["paths"] = (state.replace(run_id, "RUN"), sampler_path.replace(run_id, "RUN"))

        sampler = service.create_sampling_client(model_path=sampler_path).result()
        prompt = tinker.ModelInput.from_ints(tokens[:12])
        params = tinker.SamplingParams(max_tokens=12, seed=3, temperature=0.8)
        sampled = sampler.sample(prompt, 2, params).result()
        out["sampled_tokens"] = [seq.tokens for seq in sampled.sequences]
        out["sampled_logprobs"] = [seq.logprobs for seq in sampled.sequences]
        out["stop_reasons"] = [seq.stop_reason for seq in sampled.sequences]
        out["tokens_are_lists"] = [type(seq.tokens).__name__ for seq in sampled.sequences]
        out["appended"] = sampled.sequences[0].tokens + [1]
        out["compute_logprobs"] = sampler.compute_logprobs(prompt).result()

        async def in_asyncio() -> Any:
            response = await sampler.sample_async(prompt, 1, params)
            fwd = await training.forward(batch, "cross_entropy")
            return response.sequences[0].tokens, fwd.metrics["loss:sum"]

        out["asyncio"] = asyncio.run(in_asyncio())

        resumed = service.create_training_client_from_state_with_optimizer(state).result()
        fb = resumed.forward_backward(batch, "cross_entropy")
        resumed.optim_step(adam).result()
        out["resumed_loss"] = fb.result().metrics["loss:sum"]
        fb = training.forward_backward(batch, "cross_entropy")
        training.optim_step(adam).result()
        out["continued_loss"] = fb.result().metrics["loss:sum"]
        fresh = service.create_training_client_from_state(state).result()
        out["weights_only_loss"] = fresh.forward(batch, "cross_entropy").result().metrics["loss:sum"]

        rest = service.create_rest_client()
        ckpts = rest.list_checkpoints(run_id).result()
        out["checkpoints"] = sorted((c.checkpoint_id, c.checkpoint_type, c.tinker_path.replace(run_id, "RUN"))
                                    for c in ckpts.checkpoints)
        run_info = rest.get_training_run(run_id).result()
        out["training_run"] = (run_info.base_model, run_info.lora_rank, run_info.is_lora)
        weights = rest.get_weights_info_by_tinker_path(state).result()
        out["weights_info"] = (weights.base_model, weights.lora_rank)
        parsed = tinker.ParsedCheckpointTinkerPath.from_tinker_path(state)
        out["parsed"] = (parsed.training_run_id == run_id, parsed.checkpoint_type, parsed.checkpoint_id)

        out["errors"] = {
            "unknown_run": _error(lambda: rest.get_training_run("no-such-run").result()),
            "unknown_checkpoint": _error(lambda: rest.get_weights_info_by_tinker_path(
                "tinker://no-such-run/weights/x").result()),
            "load_missing": _error(lambda: training.load_state(f"tinker://{run_id}/weights/missing").result()),
            "bad_base_model": _error(lambda: service.create_lora_training_client(base_model="no/such-model").result()),
            "sampler_missing": _error(lambda: service.create_sampling_client(
                model_path=f"tinker://{run_id}/sampler_weights/missing").result()),
            "bad_path": _error(lambda: tinker.ParsedCheckpointTinkerPath.from_tinker_path("s3://x")),
        }
    return out
