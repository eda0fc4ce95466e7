"""The official SDK (``tinker`` 0.38, unmodified) trains and samples against the local server.

The server runs in a subprocess on 127.0.0.1; the SDK is sync (it runs its own
asyncio loop thread), so this is a plain sync test.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.sdk

TEXT = "the quick brown fox jumps over the lazy dog. " * 3
BASE = "tinker-actors/byte-lm-tiny"


@pytest.fixture
def server_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    errlog = open(tmp_path / "server.log", "w")  # a file: a full pipe would stall the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinker_actors.server", "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=errlog,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "http://" in line, (line, (tmp_path / "server.log").read_text())
        url = line.strip().rsplit(" ", 1)[-1]
        monkeypatch.setenv("TINKER_API_KEY", "tml-test")
        monkeypatch.setenv("TINKER_TELEMETRY", "0")
        monkeypatch.setenv("TINKER_BASE_URL", url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errlog.close()


def _datum(tinker, tokens: list[int]):
    return tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": np.asarray(tokens[1:], dtype=np.int64),
            "weights": np.ones(len(tokens) - 1, dtype=np.float32),
        },
    )


def _loss(out) -> float:
    return float(out.metrics["loss:sum"])


def test_official_sdk_trains_samples_saves_and_restores(server_url: str) -> None:
    import tinker
    from tinker import types

    tokens = list(TEXT.encode())
    batch = [_datum(tinker, tokens[i : i + 48]) for i in range(0, 96, 24)]
    adam = types.AdamParams(learning_rate=1e-2)

    service = tinker.ServiceClient(base_url=server_url)
    training = service.create_lora_training_client(base_model=BASE, rank=8).result()

    losses = []
    for _ in range(20):
        fb = training.forward_backward(batch, "cross_entropy")
        opt = training.optim_step(adam)
        losses.append(_loss(fb.result()))
        opt.result()
    assert losses[-1] < 0.7 * losses[0], losses

    # sample from saved sampler weights, with logprobs
    sampler_path = training.save_weights_for_sampler(name="final").result().path
    sampling = service.create_sampling_client(model_path=sampler_path).result()
    prompt = tinker.ModelInput.from_ints(tokens[:10])
    res = sampling.sample(prompt, num_samples=2, sampling_params=types.SamplingParams(max_tokens=8, temperature=1.0, seed=3)).result()
    assert len(res.sequences) == 2
    seq = res.sequences[0]
    assert seq.logprobs is not None and len(seq.logprobs) == len(seq.tokens) > 0
    assert all(s.sequence_id for s in res.sequences)

    # compute_logprobs of prompt + sample agrees with the sample's logprobs
    full = tinker.ModelInput.from_ints(tokens[:10] + list(seq.tokens))
    lps = sampling.compute_logprobs(full).result()
    assert lps[0] is None
    np.testing.assert_allclose(lps[10:], seq.logprobs, atol=1e-4)

    # save state, restore with the optimizer, same next-step loss
    state_path = training.save_state("ckpt-20").result().path
    restored = service.create_training_client_from_state_with_optimizer(state_path).result()
    step = [_datum(tinker, tokens[5:60])]
    after_step = []
    for client in (training, restored):
        first = _loss(client.forward_backward(step, "cross_entropy").result())
        client.optim_step(adam).result()
        after_step.append((first, _loss(client.forward(step, "cross_entropy").result())))
    (a0, a1), (b0, b1) = after_step
    assert a0 == pytest.approx(b0, rel=1e-6)
    # equal only if the Adam moments and step count came back too
    assert a1 == pytest.approx(b1, rel=1e-6) and a1 < a0

    # checkpoints through the RestClient: list, then delete one
    rest = tinker.RestClient(base_url=server_url)
    run_id = training.model_id
    listed = rest.list_checkpoints(run_id).result()
    paths = {c.tinker_path for c in listed.checkpoints}
    assert state_path in paths
    assert sampler_path in paths and sampler_path.endswith("/sampler_weights/final")
    rest.delete_checkpoint_from_tinker_path(state_path).result()
    after = {c.tinker_path for c in rest.list_checkpoints(run_id).result().checkpoints}
    assert state_path not in after
    run = rest.get_training_run(run_id).result()
    assert run.base_model == BASE and run.corrupted is False

    # an unnamed sampler save answers with a sampling session
    quick = training.save_weights_and_get_sampling_client().result()
    assert len(quick.sample(prompt, 1, types.SamplingParams(max_tokens=4)).result().sequences[0].tokens) == 4

    service.close("success")
