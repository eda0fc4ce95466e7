"""Training behaviour of the numpy model: learning, Adam, accumulation, save/load."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tinker_actors.server.model import (
    BASE_MODEL_NAME,
    AdamConfig,
    ByteTokenizer,
    LoraConfig,
    TrainableModel,
    load_sampler,
)

TEXT = "the quick brown fox jumps over the lazy dog. " * 3


def _sft_datum(text: str = TEXT):
    ids = np.array(ByteTokenizer().encode(text, add_bos=True), dtype=np.int64)
    return (ids[:-1], {"target_tokens": ids[1:], "weights": np.ones(ids.size - 1, dtype=np.float32)})


def test_cross_entropy_falls_over_twenty_adam_steps() -> None:
    model = TrainableModel(LoraConfig(rank=8, seed=1))
    datum = _sft_datum()
    tokens = datum[0].size
    losses = []
    for _ in range(20):
        losses.append(model.forward_backward([datum], "cross_entropy").metrics["loss:sum"] / tokens)
        model.optim_step(AdamConfig(learning_rate=1e-2))
    final = model.forward([datum]).metrics["loss:sum"] / tokens
    # Starts near log(264) = 5.6 nats per byte; memorising the text drives it far down.
    assert losses[0] > 5.0
    assert final < 1.5
    assert all(b < a for a, b in zip(losses[:10], losses[1:11]))


def test_fresh_lora_equals_base_model_and_seed_fixes_weights() -> None:
    a = TrainableModel(LoraConfig(rank=4, seed=3))
    b = TrainableModel(LoraConfig(rank=4, seed=3))
    c = TrainableModel(LoraConfig(rank=4, seed=4))
    for key in a.params:
        assert np.array_equal(a.params[key], b.params[key])
    assert not np.array_equal(a.params["wq.A"], c.params["wq.A"])
    assert all(not v.any() for k, v in a.params.items() if k.endswith(".B"))
    datum = _sft_datum("hello")
    lp_a = a.forward([datum]).loss_fn_outputs[0]["logprobs"]
    lp_c = c.forward([datum]).loss_fn_outputs[0]["logprobs"]
    np.testing.assert_array_equal(lp_a, lp_c)  # B = 0: both are the base model
    assert lp_a.dtype == np.float32 and lp_a.shape == (5,)


def test_logprobs_output_is_log_softmax_of_target() -> None:
    model = TrainableModel(LoraConfig(rank=2))
    tokens, inputs = _sft_datum("abcdef")
    out = model.forward([(tokens, inputs)]).loss_fn_outputs[0]
    prompt_lp = model.sampler().compute_prompt_logprobs(np.append(tokens, inputs["target_tokens"][-1]))
    np.testing.assert_allclose(out["logprobs"], prompt_lp[1:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["elementwise_loss"], -out["logprobs"], rtol=1e-6)


def test_adam_step_matches_hand_computation_with_weight_decay_and_clipping() -> None:
    model = TrainableModel(LoraConfig(rank=2, seed=9, train_attn=False))
    datum = _sft_datum("numbers 0123456789")
    model.forward_backward([datum], "cross_entropy")
    adam = AdamConfig(learning_rate=0.05, beta1=0.8, beta2=0.9, eps=1e-8, weight_decay=0.1, grad_clip_norm=0.5)
    # Two steps so the moments and the bias correction both matter.
    expected = {k: v.astype(np.float64) for k, v in model.params.items()}
    m = {k: np.zeros_like(v) for k, v in expected.items()}
    v2 = {k: np.zeros_like(v) for k, v in expected.items()}
    for step in (1, 2):
        grads = {k: g.astype(np.float64) for k, g in model.pending_grads.items()}
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
        assert norm > 0.5  # so clipping is exercised
        scale = 0.5 / (norm + 1e-6)
        metrics = model.optim_step(adam)
        assert metrics["grad_norm:mean"] == pytest.approx(norm, rel=1e-6)
        assert all(":" in key for key in metrics)
        for k in expected:
            g = grads[k] * scale
            m[k] = 0.8 * m[k] + 0.2 * g
            v2[k] = 0.9 * v2[k] + 0.1 * g * g
            expected[k] = expected[k] * (1 - 0.05 * 0.1)
            expected[k] -= 0.05 * (m[k] / (1 - 0.8**step)) / (np.sqrt(v2[k] / (1 - 0.9**step)) + 1e-8)
            np.testing.assert_allclose(model.params[k], expected[k], rtol=1e-4, atol=1e-6)
        assert all(not g.any() for g in model.pending_grads.values())  # consumed
        if step == 1:
            model.forward_backward([datum], "cross_entropy")
    assert model.step == 2


def test_gradients_accumulate_across_calls_until_optim_step() -> None:
    datum_a, datum_b = _sft_datum("first sequence"), _sft_datum("second one")
    whole = TrainableModel(LoraConfig(rank=4))
    whole.forward_backward([datum_a, datum_b], "cross_entropy")
    split = TrainableModel(LoraConfig(rank=4))
    split.forward_backward([datum_a], "cross_entropy")
    split.forward_backward([datum_b], "cross_entropy")
    for key, value in whole.pending_grads.items():
        np.testing.assert_allclose(split.pending_grads[key], value, rtol=1e-5, atol=1e-7)
    forward_only = TrainableModel(LoraConfig(rank=4))
    result = forward_only.forward([datum_a])
    assert result.grads is None
    assert all(not g.any() for g in forward_only.pending_grads.values())


def _train(model: TrainableModel, steps: int, datum) -> list[float]:
    losses = []
    for _ in range(steps):
        losses.append(model.forward_backward([datum], "cross_entropy").metrics["loss:sum"])
        model.optim_step(AdamConfig(learning_rate=5e-3, weight_decay=0.01, grad_clip_norm=10.0))
    return losses


def test_restored_with_optimizer_continues_bit_identically(tmp_path) -> None:
    datum = _sft_datum()
    original = TrainableModel(LoraConfig(rank=4, seed=2, train_mlp=False))
    _train(original, 3, datum)
    original.save(tmp_path / "ckpt", optimizer=True)
    restored = TrainableModel.load(tmp_path / "ckpt", optimizer=True)
    assert restored.step == 3
    assert _train(restored, 3, datum) == _train(original, 3, datum)
    for key in original.params:
        assert np.array_equal(original.params[key], restored.params[key])

    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["base_model"] == BASE_MODEL_NAME
    assert meta["lora_config"] == {"rank": 4, "seed": 2, "train_unembed": True, "train_mlp": False, "train_attn": True}
    assert meta["step"] == 3 and meta["has_optimizer"] is True


def test_restored_without_optimizer_starts_adam_afresh(tmp_path) -> None:
    datum = _sft_datum()
    original = TrainableModel(LoraConfig(rank=4, seed=2))
    _train(original, 3, datum)
    original.save(tmp_path / "ckpt", optimizer=True)
    weights_only = TrainableModel.load(tmp_path / "ckpt", optimizer=False)
    with_opt = TrainableModel.load(tmp_path / "ckpt", optimizer=True)
    assert weights_only.step == 0
    first = weights_only.forward([datum]).metrics["loss:sum"]
    assert first == with_opt.forward([datum]).metrics["loss:sum"]  # same weights
    assert _train(weights_only, 2, datum)[1] != _train(with_opt, 2, datum)[1]  # different moments


def test_sampler_weights_save_and_errors(tmp_path) -> None:
    model = TrainableModel(LoraConfig(rank=4, seed=2))
    _train(model, 2, _sft_datum())
    model.save_sampler(tmp_path / "s")
    prompt = ByteTokenizer().encode("the quick")
    np.testing.assert_array_equal(
        load_sampler(tmp_path / "s").compute_prompt_logprobs(prompt), model.sampler().compute_prompt_logprobs(prompt)
    )
    with pytest.raises(ValueError, match="without optimizer"):
        TrainableModel.load(tmp_path / "s", optimizer=True)
    with pytest.raises(ValueError, match="no saved model state"):
        TrainableModel.load(tmp_path / "missing")
    (tmp_path / "s" / "weights.npz").write_bytes(b"junk")
    with pytest.raises(ValueError):
        load_sampler(tmp_path / "s")


def test_sampler_is_a_frozen_copy() -> None:
    model = TrainableModel(LoraConfig(rank=4))
    sampler = model.sampler()
    prompt = ByteTokenizer().encode("frozen")
    before = sampler.compute_prompt_logprobs(prompt)
    _train(model, 2, _sft_datum())
    np.testing.assert_array_equal(sampler.compute_prompt_logprobs(prompt), before)
    assert not np.array_equal(model.sampler().compute_prompt_logprobs(prompt)[1:], before[1:])


@pytest.mark.parametrize(
    ("loss_fn", "inputs", "config", "message"),
    [
        ("custom", {"target_tokens": [1, 2]}, None, "unsupported loss_fn 'custom'"),
        ("ppo", {"target_tokens": [1, 2], "advantages": [0.0, 1.0]}, None, "needs loss_fn_inputs\\['logprobs'\\]"),
        ("cross_entropy", {"target_tokens": [1, 999]}, None, "outside the vocabulary"),
        ("cross_entropy", {"target_tokens": [1, 2, 3]}, None, "shape \\[3\\], expected \\[2\\]"),
        ("cross_entropy", {"target_tokens": [1, 2], "weights": [1.0]}, None, "weights"),
        ("dro", {"target_tokens": [1, 2], "logprobs": [0.0, 0.0], "advantages": [0.0, 0.0]}, {"betta": 1.0}, "betta"),
    ],
)
def test_bad_requests_raise_value_error_and_leave_no_gradient(loss_fn, inputs, config, message) -> None:
    model = TrainableModel(LoraConfig(rank=2))
    good = _sft_datum("ok")
    with pytest.raises(ValueError, match=message):
        model.forward_backward([good, ([5, 6], {k: np.asarray(v) for k, v in inputs.items()})], loss_fn, config)
    assert all(not g.any() for g in model.pending_grads.values())


def test_bad_configs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown base model"):
        TrainableModel(LoraConfig(rank=2), base_model="Qwen/Qwen3-8B")
    with pytest.raises(ValueError, match="rank"):
        LoraConfig(rank=0)
    with pytest.raises(ValueError, match="model_input\\[1\\]"):
        TrainableModel(LoraConfig(rank=2)).forward([([1, -3], {"target_tokens": [1, 2]})])
    with pytest.raises(ValueError, match="learning_rate"):
        AdamConfig(learning_rate=-1.0)
