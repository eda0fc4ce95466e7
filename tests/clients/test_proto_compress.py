"""proto_compress_fwdbwd: when the server asks, forward_backward bodies go out zstd-compressed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import zstandard

from tinker_actors.api import API
from tinker_actors.wire import protobuf as wpb
from tinker_actors.wire import types as wt

BASE = "tinker-actors/byte-lm-tiny"


def _request() -> wt.ForwardBackwardRequest:
    datum = wt.Datum(model_input=wt.ModelInput.from_ints(list(range(1, 200))),
                     loss_fn_inputs={"target_tokens": list(range(2, 201)), "weights": [1.0] * 199})
    return wt.ForwardBackwardRequest(
        forward_backward_input=wt.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy"), model_id="m", seq_id=1)


class _Recorder:
    def __init__(self, compress: bool) -> None:
        self.server_flags = SimpleNamespace(proto_compress_fwdbwd=compress)
        self.calls: list[dict[str, Any]] = []

    async def request(self, resource: Any, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return wt.UntypedAPIFuture(request_id="r1")


async def test_bodies_are_zstd_with_a_content_encoding_only_when_the_flag_is_on() -> None:
    plain, packed = _Recorder(False), _Recorder(True)
    await API(plain).training.forward_backward(_request())
    await API(packed).training.forward_backward(_request())
    raw, sent = plain.calls[0], packed.calls[0]
    assert "Content-Encoding" not in (raw["headers"] or {})
    assert sent["headers"]["Content-Encoding"] == "zstd"
    assert zstandard.ZstdDecompressor().decompress(sent["content"]) == raw["content"]
    assert len(sent["content"]) < len(raw["content"]) and sent["content_type"] == wpb.PROTOBUF_CONTENT_TYPE


async def test_training_through_a_compressing_server_gives_the_same_loss(tmp_path, h) -> None:
    datum = _request().forward_backward_input.data[0]
    losses = []
    for flag in (False, True):
        async with h.local_server(tmp_path / str(flag), client_config_overrides={"proto_compress_fwdbwd": flag}) as url:
            async with h.client_on(url) as service:
                assert service.service.server_flags.proto_compress_fwdbwd is flag
                training = await service.create_lora_training_client(BASE, rank=2, seed=0)
                losses.append((await training.forward_backward([datum], "cross_entropy")).metrics["loss:sum"])
    assert losses[0] == losses[1]
