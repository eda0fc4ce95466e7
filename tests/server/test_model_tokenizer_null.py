"""The byte tokenizer and the null-compute model."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors.server.model import (
    BOS_TOKEN_ID,
    EOS_TOKEN_ID,
    AdamConfig,
    ByteTokenizer,
    LoraConfig,
    NullModel,
    TrainableModel,
    load_null_sampler,
)


def test_tokenizer_round_trips_utf8_and_handles_specials() -> None:
    tok = ByteTokenizer()
    text = "héllo wörld ✓"
    ids = tok.encode(text, add_bos=True)
    assert ids[0] == BOS_TOKEN_ID and len(ids) == 1 + len(text.encode())
    assert tok.decode(ids) == text
    assert tok.decode([104, 105, EOS_TOKEN_ID], skip_special_tokens=False) == "hi<|eos|>"
    assert tok.decode([0xE2, 0x9C]) == "\ufffd"  # a cut-off multibyte char does not raise
    assert tok.vocab_size == 264 and tok.eos_token_id == 257
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([264])


def test_null_model_answers_with_fixed_shapes(tmp_path) -> None:
    model = NullModel(LoraConfig(rank=4))
    data = [(np.arange(7), {"target_tokens": np.arange(7)}), (np.arange(3), {"target_tokens": np.arange(3)})]
    result = model.forward_backward(data, "cross_entropy")
    assert [o["logprobs"].shape for o in result.loss_fn_outputs] == [(7,), (3,)]
    assert result.loss_fn_outputs[0]["logprobs"].dtype == np.float32
    assert result.metrics == {"loss:sum": 0.0}
    with pytest.raises(ValueError, match="unsupported"):
        model.forward_backward(data, "custom")
    with pytest.raises(ValueError, match="advantages"):
        model.forward_backward([(np.arange(2), {"target_tokens": np.arange(2), "logprobs": np.zeros(2)})], "ppo")
    metrics = model.optim_step(AdamConfig())
    assert all(":" in k for k in metrics) and model.step == 1

    res = model.sampler().sample([1, 2, 3], num_samples=2, max_tokens=5, include_prompt_logprobs=True, topk_sample_logprobs=2)
    assert len(res.sequences) == 2
    seq = res.sequences[0]
    assert seq.tokens.tolist() == list(b"abcde") and seq.stop_reason == "length"
    assert seq.logprobs.shape == (5,) and seq.topk_logprobs.token_ids.shape == (5, 2)
    assert res.prompt_logprobs.shape == (3,) and np.isnan(res.prompt_logprobs[0])

    # Its checkpoints are valid states that a real model can load, and back.
    model.save(tmp_path / "n", optimizer=True)
    assert NullModel.load(tmp_path / "n", optimizer=True).step == 1
    real = TrainableModel.load(tmp_path / "n", optimizer=True)
    assert real.lora_config.rank == 4
    model.save_sampler(tmp_path / "ns")
    assert load_null_sampler(tmp_path / "ns").sample([1], max_tokens=2).sequences[0].tokens.tolist() == [97, 98]
