"""Every public name of the official SDK 0.38 has a counterpart in the drop-in (tinker_actors.sdk).

Introspects the installed SDK, so a newer SDK with a method we lack fails here.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import tinker as official
import tinker.lib.public_interfaces as official_pi
import tinker.types as official_types

import tinker_actors.sdk as dropin
import tinker_actors.sdk.public_interfaces as dropin_pi
import tinker_actors.sdk.types as dropin_types

pytestmark = pytest.mark.sdk

CLIENTS = [
    "ServiceClient", "TrainingClient", "SamplingClient", "RestClient", "AdminClient", "APIFuture",
    "AwaitableConcurrentFuture", "BackcompatTrainingClientFuture", "BackcompatSamplingClientFuture",
]


def _public_methods(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if (not name.startswith("_") or name in ("__enter__", "__exit__", "__await__", "__reduce__"))
        and callable(member)
    }


def test_official_sdk_is_the_reference() -> None:
    assert official.__version__ == "0.38.0"
    assert not official.__file__.startswith(dropin.__file__.rsplit("/", 1)[0])


@pytest.mark.parametrize("name", CLIENTS)
def test_every_client_method_and_async_variant_exists(name: str) -> None:
    theirs, ours = getattr(official_pi, name), getattr(dropin_pi, name)
    missing, not_async, params = [], [], []
    for method, member in _public_methods(theirs).items():
        mine = getattr(ours, method, None)
        if mine is None or not callable(mine):
            missing.append(method)
            continue
        if inspect.iscoroutinefunction(member) and not inspect.iscoroutinefunction(mine):
            not_async.append(method)
        if name.startswith("Backcompat") or method.startswith("__"):
            continue  # forwarders take (*args, **kwargs) in the SDK too
        try:
            their_sig, my_sig = inspect.signature(member), inspect.signature(mine)
        except (TypeError, ValueError):
            continue
        mine_params = my_sig.parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in mine_params.values())
        for pname, p in their_sig.parameters.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if pname not in mine_params and not takes_kwargs:
                params.append(f"{method}({pname})")
            elif pname in mine_params and p.default is not p.empty and mine_params[pname].default is p.empty:
                params.append(f"{method}({pname} has a default in the SDK)")
    assert not missing, f"{name}: no counterpart for {missing}"
    assert not not_async, f"{name}: these are coroutines in the SDK: {not_async}"
    assert not params, f"{name}: parameters differ: {params}"


def test_every_top_level_name_exists() -> None:
    missing = [n for n in official.__all__ if not hasattr(dropin, n)]
    assert not missing, missing


def test_every_type_name_exists() -> None:
    names = [n for n in dir(official_types) if not n.startswith("_") and not inspect.ismodule(getattr(official_types, n))]
    missing = [n for n in names if not hasattr(dropin_types, n)]
    assert not missing, missing


def test_exception_hierarchy_matches() -> None:
    for name in ("TinkerError", "APIError", "APIStatusError", "APIConnectionError", "APITimeoutError",
                 "APIResponseValidationError", "RequestFailedError", "BadRequestError", "AuthenticationError",
                 "BillingError", "PermissionDeniedError", "NotFoundError", "ConflictError",
                 "UnprocessableEntityError", "RateLimitError", "InternalServerError"):
        theirs, ours = getattr(official, name), getattr(dropin, name)
        their_bases = [c.__name__ for c in theirs.__mro__ if c.__module__.startswith("tinker")]
        our_bases = [c.__name__ for c in ours.__mro__ if c.__module__.startswith("tinker_actors")]
        assert their_bases == our_bases, (name, their_bases, our_bases)


@pytest.mark.parametrize("name", ["Datum", "TensorData", "SampledSequence", "SampleResponse", "ForwardBackwardOutput",
                                  "PromptProvenanceSpan", "SampledProvenanceSpan", "PromptAltTokens"])
def test_sdk_dataclasses_are_dataclasses_with_the_same_fields(name: str) -> None:
    theirs, ours = getattr(official_types, name), getattr(dropin_types, name)
    assert dataclasses.is_dataclass(ours)
    assert [f.name for f in dataclasses.fields(theirs)] == [f.name for f in dataclasses.fields(ours)]


def test_clients_allow_setattr_patching() -> None:
    original = dropin.TrainingClient.forward_backward
    try:
        dropin.TrainingClient.forward_backward = lambda self, *a, **k: "patched"  # type: ignore[method-assign]
        assert dropin.TrainingClient.forward_backward(None) == "patched"  # type: ignore[arg-type]
    finally:
        dropin.TrainingClient.forward_backward = original  # type: ignore[method-assign]
