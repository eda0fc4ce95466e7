"""The same scenario on the official SDK and on the drop-in, against one local server, compared field by field.

Same seeds give the same tokens; losses and logprobs agree within 1e-6; the
same faults raise the same exception classes (see ``scenario.py``).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import scenario

pytestmark = pytest.mark.sdk


def _close(a: Any, b: Any, path: str, diffs: list[str]) -> None:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or not math.isclose(a, b, rel_tol=0, abs_tol=1e-6):
            diffs.append(f"{path}: SDK {a!r} != drop-in {b!r}")
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            diffs.append(f"{path}: SDK has {len(a)} items, drop-in {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]", diffs)
        return
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            diffs.append(f"{path}: keys {sorted(a)} != {sorted(b)}")
            return
        for key in a:
            _close(a[key], b[key], f"{path}.{key}", diffs)
        return
    if a != b or type(a) is not type(b):
        diffs.append(f"{path}: SDK {a!r} != drop-in {b!r}")


@pytest.fixture(scope="module")
def results(server_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import os

    import tinker as official

    import tinker_actors.sdk as dropin

    saved = dict(os.environ)
    os.environ.update(TINKER_API_KEY="tml-test", TINKER_TELEMETRY="0", TINKER_BASE_URL=server_url)
    try:
        with pytest.warns(FutureWarning):  # the SDK flags its deprecated calls in the scenario
            theirs = scenario.run(official, server_url)
        ours = scenario.run(dropin, server_url)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return theirs, ours


def test_same_results_field_by_field(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    theirs, ours = results
    diffs: list[str] = []
    _close(theirs, ours, "scenario", diffs)
    assert not diffs, "\n".join(diffs)


def test_the_scenario_exercises_what_it_claims(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    theirs, ours = results
    assert ours["losses"][-1] < ours["losses"][0]  # it trained
    assert ours["resumed_loss"] == pytest.approx(ours["continued_loss"], abs=1e-6)  # exact resume
    assert ours["tokens_are_lists"] == ["list", "list"]
    assert ours["appended"][-1] == 1 and len(ours["appended"]) == 13  # list +, not element-wise
    assert set(ours["errors"].values()) >= {"NotFoundError", "BadRequestError", "ValueError"}
    assert ours["errors"] == theirs["errors"]
