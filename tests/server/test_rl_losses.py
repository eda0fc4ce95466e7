"""gspo and stable_reinforce: their values follow their formulas (gradients: test_model_gradients.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors.server.model import LoraConfig, ModelConfig, TrainableModel
from tinker_actors.server.model.losses import loss_config, token_loss

CFG = ModelConfig(name="test/f64", vocab_size=264, d_model=16, d_ff=32, base_seed=3, dtype="float64")


def _setup() -> tuple[TrainableModel, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    model = TrainableModel(LoraConfig(rank=4, seed=5), model_config=CFG)
    rng = np.random.default_rng(1)
    tokens, targets = rng.integers(0, 258, 8), rng.integers(0, 258, 8)
    lp = model.forward([(tokens, {"target_tokens": targets})]).loss_fn_outputs[0]["logprobs"].astype(np.float64)
    inputs = {
        "target_tokens": targets,
        "logprobs": lp - np.array([0.0, 0.0, 0.1, -0.2, 0.05, 0.9, -0.1, 0.0]),
        # the first two positions are the prompt: no advantage, not part of gspo's sequence
        "advantages": np.array([0.0, 0.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5]),
    }
    return model, tokens, inputs, lp


def test_gspo_uses_one_geometric_mean_ratio_over_the_action_tokens() -> None:
    model, tokens, inputs, lp = _setup()
    out = model.forward([(tokens, inputs)], "gspo")
    mask = inputs["advantages"] != 0
    s = np.exp(np.mean((lp - inputs["logprobs"])[mask]))
    expected = -np.sum(np.minimum(s * inputs["advantages"], np.clip(s, 0.8, 1.2) * inputs["advantages"])[mask])
    assert out.metrics["loss:sum"] == pytest.approx(expected, rel=1e-6)
    assert out.metrics["ratio:mean"] == pytest.approx(s, rel=1e-6)
    # a sequence ratio past the bound with a positive advantage: the constant clipped term, no gradient
    result = model.forward_backward([(tokens, inputs)], "gspo", {"clip_high_threshold": 0.9})
    assert result.grads is not None and all(not g.any() for g in result.grads.values())


def test_stable_reinforce_truncates_the_importance_weight_from_above() -> None:
    model, tokens, inputs, lp = _setup()
    ratio = np.exp(lp - inputs["logprobs"])
    out = model.forward([(tokens, inputs)], "stable_reinforce", {"clip_high_threshold": 1.5})
    expected = -np.sum(np.minimum(ratio, 1.5) * inputs["advantages"] * lp)
    assert out.metrics["loss:sum"] == pytest.approx(expected, rel=1e-6)
    assert out.metrics["clip_fraction:mean"] == pytest.approx(float(np.mean(ratio > 1.5)))


def test_gspo_without_action_tokens_is_zero() -> None:
    terms = token_loss("gspo", np.array([-1.0, -2.0]), {"logprobs": np.zeros(2), "advantages": np.zeros(2)},
                       loss_config("gspo", None))
    assert not terms.elementwise.any() and not terms.dlogprobs.any()


def test_unknown_config_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="not used by stable_reinforce"):
        loss_config("stable_reinforce", {"clip_low_threshold": 0.5})
