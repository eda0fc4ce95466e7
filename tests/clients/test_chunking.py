"""Chunk planning and the metric combiner of chunked forward_backward."""

from __future__ import annotations

import pytest

from tinker_actors.clients.chunking import combine_metrics, combine_outputs, estimate_datum_bytes, plan_chunks
from tinker_actors.wire import types as wt


def _datum(n: int) -> wt.Datum:
    return wt.Datum(
        model_input=wt.ModelInput.from_ints(list(range(n))),
        loss_fn_inputs={"target_tokens": list(range(n)), "weights": [1.0] * n},
    )


def test_estimate_counts_tokens_and_tensor_bytes() -> None:
    # 10 int32 tokens + 10 int64 targets + 10 float32 weights
    assert estimate_datum_bytes(_datum(10)) == 10 * 4 + 10 * 8 + 10 * 4


def test_chunks_respect_count_limit_and_keep_order() -> None:
    data = [_datum(2) for _ in range(2500)]
    chunks = plan_chunks(data, max_len=1024, max_bytes=10**9)
    assert [len(c) for c in chunks] == [1024, 1024, 452]
    assert [d for c in chunks for d in c] == data


def test_chunks_respect_byte_limit_and_oversized_datum_goes_alone() -> None:
    small, big = _datum(10), _datum(1000)  # 160 and 16,000 bytes
    chunks = plan_chunks([small, small, big, small], max_len=1024, max_bytes=1000)
    assert [len(c) for c in chunks] == [2, 1, 1]


@pytest.mark.parametrize(
    ("key", "values", "weights", "expected"),
    [
        ("loss:sum", [1.0, 2.0, 3.0], [1, 1, 1], 6.0),
        ("acc:mean", [1.0, 0.0], [3, 1], 0.75),
        ("lr:min", [0.5, 0.25], [1, 1], 0.25),
        ("g:max", [0.5, 0.25], [1, 1], 0.5),
        ("t:slack", [4.0, 0.0], [1, 3], 3.0),
        ("h:hash2", [2.0**63, 2.0**63, 5.0], [1, 1, 1], 5.0),
        ("nocolon", [1.0, 3.0], [1, 1], 2.0),
    ],
)
def test_metric_reductions(key: str, values: list[float], weights: list[int], expected: float) -> None:
    assert combine_metrics([{key: v} for v in values], weights)[key] == pytest.approx(expected)


def test_unique_keeps_every_value_and_unknown_is_dropped() -> None:
    out = combine_metrics([{"id:unique": 7.0, "x:median": 1.0}, {"id:unique": 9.0, "x:median": 2.0}], [1, 1])
    assert out == {"id:unique": 7.0, "id:unique_1": 9.0}


def test_combine_outputs_concatenates_in_order() -> None:
    a = wt.ForwardBackwardOutput(
        loss_fn_output_type="CrossEntropyLossReturn",
        loss_fn_outputs=[{"logprobs": wt.TensorData.from_list([0.1], "float32")}],
        metrics={"loss:sum": 1.0},
    )
    b = wt.ForwardBackwardOutput(
        loss_fn_output_type="CrossEntropyLossReturn",
        loss_fn_outputs=[{"logprobs": wt.TensorData.from_list([0.2], "float32")}] * 2,
        metrics={"loss:sum": 2.0},
    )
    out = combine_outputs([a, b])
    assert len(out.loss_fn_outputs) == 3 and out.metrics == {"loss:sum": 3.0}
    assert out.loss_fn_outputs[0]["logprobs"].tolist() == pytest.approx([0.1])
