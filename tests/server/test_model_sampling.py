"""Sampling from the numpy model: determinism, truncation, stops, logprobs."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors.server.model import (
    EOS_TOKEN_ID,
    AdamConfig,
    ByteTokenizer,
    LoraConfig,
    Sampler,
    TrainableModel,
    get_model_config,
)

TOK = ByteTokenizer()
PROMPT = TOK.encode("the quick brown", add_bos=True)


@pytest.fixture(scope="module")
def sampler() -> Sampler:
    # A model trained a little, so its distribution is peaked but not trivial.
    model = TrainableModel(LoraConfig(rank=8, seed=1))
    ids = np.array(TOK.encode("the quick brown fox jumps over the lazy dog. " * 3, add_bos=True))
    datum = (ids[:-1], {"target_tokens": ids[1:]})
    for _ in range(8):
        model.forward_backward([datum], "cross_entropy")
        model.optim_step(AdamConfig(learning_rate=1e-2))
    return model.sampler()


def _greedy(sampler: Sampler, n: int) -> list[int]:
    return sampler.sample(PROMPT, max_tokens=n, temperature=0.0, stop=[]).sequences[0].tokens.tolist()


def test_same_seed_same_tokens_and_samples_differ(sampler: Sampler) -> None:
    a = sampler.sample(PROMPT, num_samples=3, max_tokens=24, seed=42, temperature=1.5, stop=[])
    b = sampler.sample(PROMPT, num_samples=3, max_tokens=24, seed=42, temperature=1.5, stop=[])
    c = sampler.sample(PROMPT, num_samples=1, max_tokens=24, seed=43, temperature=1.5, stop=[])
    assert [s.tokens.tolist() for s in a.sequences] == [s.tokens.tolist() for s in b.sequences]
    assert len({tuple(s.tokens.tolist()) for s in a.sequences}) == 3
    assert c.sequences[0].tokens.tolist() != a.sequences[0].tokens.tolist()
    # Sample i's stream depends on (seed, i) only, not on how many were asked for.
    single = sampler.sample(PROMPT, num_samples=1, max_tokens=24, seed=42, temperature=1.5, stop=[])
    assert single.sequences[0].tokens.tolist() == a.sequences[0].tokens.tolist()


def test_temperature_zero_top_k_one_and_tiny_top_p_are_greedy(sampler: Sampler) -> None:
    greedy = _greedy(sampler, 20)
    # Greedy by hand: argmax of the prompt logprobs at each extension.
    tokens = list(PROMPT)
    for _ in range(5):
        res = sampler.sample(tokens, max_tokens=1, temperature=0.0, stop=[], topk_sample_logprobs=1)
        top = res.sequences[0].topk_logprobs
        assert top is not None and res.sequences[0].tokens[0] == top.token_ids[0, 0]
        tokens.append(int(res.sequences[0].tokens[0]))
    assert tokens[len(PROMPT) :] == greedy[:5]
    for seed in (1, 2):
        assert sampler.sample(PROMPT, max_tokens=20, top_k=1, seed=seed, stop=[]).sequences[0].tokens.tolist() == greedy
        assert sampler.sample(PROMPT, max_tokens=20, top_p=1e-6, seed=seed, stop=[]).sequences[0].tokens.tolist() == greedy


def test_top_k_restricts_choices_to_the_k_most_likely(sampler: Sampler) -> None:
    res = sampler.sample(PROMPT, num_samples=40, max_tokens=1, top_k=3, temperature=2.0, seed=5, topk_sample_logprobs=3)
    allowed = set(res.sequences[0].topk_logprobs.token_ids[0].tolist())
    chosen = {int(s.tokens[0]) for s in res.sequences}
    assert chosen <= allowed and len(chosen) > 1


def test_sample_logprobs_equal_prompt_logprobs_of_the_same_tokens(sampler: Sampler) -> None:
    res = sampler.sample(PROMPT, num_samples=2, max_tokens=30, temperature=0.8, top_k=50, seed=7, stop=[])
    for seq in res.sequences:
        full = np.concatenate([PROMPT, seq.tokens])
        scored = sampler.compute_prompt_logprobs(full)
        assert np.isnan(scored[0])
        assert seq.logprobs.dtype == np.float32
        np.testing.assert_allclose(seq.logprobs, scored[len(PROMPT) :], atol=1e-4)
        assert np.all(seq.logprobs <= 0)


def test_prompt_distributions_agree_with_prompt_logprobs(sampler: Sampler) -> None:
    dist = sampler.prompt_distributions(PROMPT)
    assert dist.shape == (len(PROMPT) - 1, 264)
    np.testing.assert_allclose(np.exp(dist.astype(np.float64)).sum(axis=1), 1.0, rtol=1e-5)
    picked = dist[np.arange(len(PROMPT) - 1), PROMPT[1:]]
    np.testing.assert_allclose(picked, sampler.compute_prompt_logprobs(PROMPT)[1:], rtol=1e-6)


def test_prompt_logprobs_and_topk_shapes(sampler: Sampler) -> None:
    res = sampler.sample(
        PROMPT, max_tokens=4, include_prompt_logprobs=True, topk_prompt_logprobs=5, topk_sample_logprobs=3, seed=1
    )
    assert res.prompt_logprobs is not None and res.prompt_logprobs.shape == (len(PROMPT),)
    assert np.isnan(res.prompt_logprobs[0]) and np.all(res.prompt_logprobs[1:] < 0)
    top = res.topk_prompt_logprobs
    assert top is not None and top.token_ids.shape == (len(PROMPT), 5) and top.logprobs.shape == (len(PROMPT), 5)
    lists = top.to_lists(first_is_none=True)
    assert lists[0] is None and len(lists[1]) == 5
    # The top-1 alternative is at least as likely as the actual prompt token.
    assert np.all(top.logprobs[1:, 0] >= res.prompt_logprobs[1:] - 1e-6)
    assert np.all(np.diff(top.logprobs[1:], axis=1) <= 0)
    seq = res.sequences[0]
    assert seq.topk_logprobs is not None and seq.topk_logprobs.token_ids.shape == (len(seq.tokens), 3)


def test_max_tokens_gives_length_and_stop_string_gives_stop(sampler: Sampler) -> None:
    greedy = _greedy(sampler, 30)
    text = TOK.decode(greedy)
    res = sampler.sample(PROMPT, max_tokens=7, temperature=0.0, stop=[])
    assert res.sequences[0].stop_reason == "length" and len(res.sequences[0].tokens) == 7
    # Pick a two-byte substring that appears in the greedy continuation.
    stop = text[3:5]
    first = text.find(stop)
    res = sampler.sample(PROMPT, max_tokens=30, temperature=0.0, stop=[stop, "never-seen"])
    seq = res.sequences[0]
    assert seq.stop_reason == "stop"
    assert TOK.decode(seq.tokens) == text[: first + len(stop)]
    res = sampler.sample(PROMPT, max_tokens=30, temperature=0.0, stop=stop)
    assert res.sequences[0].tokens.tolist() == seq.tokens.tolist()


def test_stop_tokens_and_eos(sampler: Sampler) -> None:
    greedy = _greedy(sampler, 30)
    token = greedy[4]
    seq = sampler.sample(PROMPT, max_tokens=30, temperature=0.0, stop=[token]).sequences[0]
    assert seq.stop_reason == "stop" and seq.tokens.tolist() == greedy[: greedy.index(token) + 1]
    # A model trained to emit EOS stops on it by default, and not with stop=[].
    model = TrainableModel(LoraConfig(rank=8, seed=1))
    ids = np.array(TOK.encode("ab", add_bos=True) + [EOS_TOKEN_ID])
    for _ in range(30):
        model.forward_backward([(ids[:-1], {"target_tokens": ids[1:]})], "cross_entropy")
        model.optim_step(AdamConfig(learning_rate=2e-2))
    eos_sampler = model.sampler()
    prompt = TOK.encode("ab", add_bos=True)
    seq = eos_sampler.sample(prompt, max_tokens=10, temperature=0.0).sequences[0]
    assert seq.tokens.tolist() == [EOS_TOKEN_ID] and seq.stop_reason == "stop"
    seq = eos_sampler.sample(prompt, max_tokens=10, temperature=0.0, stop=[]).sequences[0]
    assert len(seq.tokens) == 10 and seq.stop_reason == "length"


def test_base_model_sampler_and_bad_parameters() -> None:
    base = Sampler.for_base_model(get_model_config("tinker-actors/byte-lm-tiny"))
    fresh = TrainableModel(LoraConfig(rank=2)).sampler()
    np.testing.assert_array_equal(base.compute_prompt_logprobs(PROMPT), fresh.compute_prompt_logprobs(PROMPT))
    for kwargs, message in [
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"num_samples": 0}, "num_samples"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"stop": ["a", 3]}, "stop"),
    ]:
        with pytest.raises(ValueError, match=message):
            base.sample(PROMPT, **kwargs)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        base.sample([1, 2, 300])
    with pytest.raises(ValueError, match="at least one token"):
        base.sample([])
