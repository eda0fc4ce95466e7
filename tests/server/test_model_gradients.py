"""Finite-difference checks of every loss function's gradient w.r.t. every adapter."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors.server.model import LOSS_FUNCTIONS, LoraConfig, ModelConfig, TrainableModel

# Small float64 model so central differences are accurate and fast.
CFG = ModelConfig(name="test/f64", vocab_size=264, d_model=16, d_ff=32, base_seed=3, dtype="float64")
T = 9


def _model(**flags: bool) -> TrainableModel:
    model = TrainableModel(LoraConfig(rank=4, seed=5, **flags), model_config=CFG)
    rng = np.random.default_rng(11)
    # B starts at zero, which would make every A-gradient zero; give it values.
    for key, value in model.params.items():
        value[...] = rng.standard_normal(value.shape) * 0.3
    return model


def _datum(model: TrainableModel, loss_fn: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 258, T)
    targets = rng.integers(0, 258, T)
    inputs: dict[str, np.ndarray] = {"target_tokens": targets}
    if loss_fn == "cross_entropy":
        inputs["weights"] = rng.uniform(0.0, 2.0, T)
        return tokens, inputs
    current = model.forward([(tokens, {"target_tokens": targets})]).loss_fn_outputs[0]["logprobs"].astype(np.float64)
    # Ratios well inside or well outside [0.8, 1.2], so the tiny perturbations
    # of the check never cross a clipping kink; advantages of both signs.
    shift = np.array([0.0, 0.5, -0.5, 0.05, 0.7, -0.6, 0.0, -0.1, 0.4])
    inputs["logprobs"] = current - shift
    inputs["advantages"] = np.array([1.0, -0.7, 0.5, -1.2, 0.9, -0.4, 0.3, 1.5, -0.8])
    return tokens, inputs


def _loss(model: TrainableModel, datum, loss_fn: str, config, frozen_weight=None) -> float:
    if frozen_weight is not None:
        # cispo's gradient treats the clipped ratio as a constant (stop-gradient),
        # so differentiate the surrogate -sum(w_t lp_t) with w frozen at the start:
        # that is cross_entropy with weights w (and its float64 loss:sum).
        tokens, inputs = datum
        datum = (tokens, {"target_tokens": inputs["target_tokens"], "weights": frozen_weight})
        loss_fn, config = "cross_entropy", None
    return model.forward([datum], loss_fn, config).metrics["loss:sum"]


def _cispo_weight(model: TrainableModel, datum) -> np.ndarray:
    tokens, inputs = datum
    lp = model.forward([datum], "cispo").loss_fn_outputs[0]["logprobs"].astype(np.float64)
    return np.clip(np.exp(lp - inputs["logprobs"]), 0.8, 1.2) * inputs["advantages"]


def _stable_reinforce_weight(model: TrainableModel, datum) -> np.ndarray:
    tokens, inputs = datum
    lp = model.forward([datum], "stable_reinforce").loss_fn_outputs[0]["logprobs"].astype(np.float64)
    return np.minimum(np.exp(lp - inputs["logprobs"]), 2.0) * inputs["advantages"]


@pytest.mark.parametrize("loss_fn", sorted(LOSS_FUNCTIONS))
def test_gradient_matches_finite_differences_for_every_adapter(loss_fn: str) -> None:
    model = _model()
    datum = _datum(model, loss_fn)
    config = {"beta": 0.3} if loss_fn == "dro" else None
    frozen = _cispo_weight(model, datum) if loss_fn == "cispo" else None
    if loss_fn == "stable_reinforce":  # also a stop-gradient weight: min(r_t, 2) A_t
        frozen = _stable_reinforce_weight(model, datum)
    grads = model.forward_backward([datum], loss_fn, config).grads
    assert grads is not None and set(grads) == set(model.params)
    rng = np.random.default_rng(13)
    eps = 1e-5
    for key, param in model.params.items():
        direction = rng.standard_normal(param.shape)
        analytic = float(np.sum(grads[key] * direction))
        saved = param.copy()
        param[...] = saved + eps * direction
        up = _loss(model, datum, loss_fn, config, frozen)
        param[...] = saved - eps * direction
        down = _loss(model, datum, loss_fn, config, frozen)
        param[...] = saved
        numeric = (up - down) / (2 * eps)
        assert abs(analytic) > 1e-6, f"{loss_fn} {key}: gradient vanished, the check would be empty"
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8), f"{loss_fn} {key}"


def test_single_entries_match_finite_differences() -> None:
    model = _model()
    datum = _datum(model, "cross_entropy")
    grads = model.forward_backward([datum], "cross_entropy").grads
    assert grads is not None
    eps = 1e-6
    for key in ("wq.A", "wk.B", "w1.A", "unembed.B"):
        param = model.params[key]
        for index in [(0, 0), (1, 2), (param.shape[0] - 1, param.shape[1] - 1)]:
            saved = param[index]
            param[index] = saved + eps
            up = _loss(model, datum, "cross_entropy", None)
            param[index] = saved - eps
            down = _loss(model, datum, "cross_entropy", None)
            param[index] = saved
            assert grads[key][index] == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-8)


@pytest.mark.parametrize(
    ("flags", "present"),
    [
        ({"train_attn": False, "train_mlp": False}, {"unembed"}),
        ({"train_attn": False, "train_unembed": False}, {"w1", "w2"}),
        ({"train_mlp": False, "train_unembed": False}, {"wq", "wk", "wv", "wo"}),
    ],
)
def test_flags_decide_which_adapters_exist_and_their_gradients_are_right(flags, present) -> None:
    model = _model(**flags)
    assert {key.split(".")[0] for key in model.params} == present
    datum = _datum(model, "cross_entropy")
    grads = model.forward_backward([datum], "cross_entropy").grads
    assert grads is not None
    rng = np.random.default_rng(17)
    eps = 1e-5
    for key, param in model.params.items():
        direction = rng.standard_normal(param.shape)
        saved = param.copy()
        param[...] = saved + eps * direction
        up = _loss(model, datum, "cross_entropy", None)
        param[...] = saved - eps * direction
        down = _loss(model, datum, "cross_entropy", None)
        param[...] = saved
        assert float(np.sum(grads[key] * direction)) == pytest.approx((up - down) / (2 * eps), rel=1e-5)


def test_ppo_gives_no_gradient_where_the_clipped_term_wins() -> None:
    model = _model()
    tokens, inputs = _datum(model, "ppo")
    # Every ratio above 1.2 with a positive advantage: min() picks the constant clipped term.
    inputs["logprobs"] = inputs["logprobs"] - 1.0
    inputs["advantages"] = np.abs(inputs["advantages"])
    result = model.forward_backward([(tokens, inputs)], "ppo")
    assert result.grads is not None
    assert all(not g.any() for g in result.grads.values())
    assert result.metrics["clip_fraction:mean"] == 1.0
    assert result.metrics["loss:sum"] == pytest.approx(-1.2 * float(inputs["advantages"].sum()))


def test_loss_values_follow_their_formulas() -> None:
    model = _model()
    tokens, inputs = _datum(model, "dro")
    lp = model.forward([(tokens, inputs)], "dro").loss_fn_outputs[0]["logprobs"].astype(np.float64)
    q, adv = inputs["logprobs"], inputs["advantages"]
    ratio = np.exp(lp - q)
    expected = {
        "importance_sampling": -np.sum(ratio * adv),
        "ppo": -np.sum(np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv)),
        "cispo": -np.sum(np.clip(ratio, 0.8, 1.2) * adv * lp),
        "dro": -np.sum(lp * adv - 0.5 * 0.05 * (lp - q) ** 2),
    }
    for loss_fn, value in expected.items():
        out = model.forward([(tokens, inputs)], loss_fn)
        assert out.metrics["loss:sum"] == pytest.approx(value, rel=1e-5), loss_fn
        assert out.metrics["ratio:mean"] == pytest.approx(float(ratio.mean()), rel=1e-5)
        assert np.sum(out.loss_fn_outputs[0]["elementwise_loss"]) == pytest.approx(value, rel=1e-4)
