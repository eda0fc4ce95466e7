"""Futures of a client that also stand in for the client, as the SDK 0.38 allows.

``service.create_lora_training_client(...)`` returns a future of a
TrainingClient: ``await`` it or call ``.result()``. Older code used the
return value as the client directly (``tc = service.create_lora_training_client(...)``
then ``tc.forward_backward(...)``); the SDK still accepts that, with a
``FutureWarning``, and so does the drop-in: every public client method on the
future waits for the client and calls it, and other public attributes
(``model_id``) are read from the finished client.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, Generic, TypeVar

from .api_future import APIFuture
from .sampling_client import SamplingClient
from .training_client import TrainingClient

C = TypeVar("C")

__all__ = ["BackcompatTrainingClientFuture", "BackcompatSamplingClientFuture",
           "TrainingClientFuture", "SamplingClientFuture"]


def _warn(cls_name: str, name: str) -> None:
    warnings.warn(
        f"using the future returned by a client-creation method as the {cls_name} ({name}) is deprecated; "
        "call .result() on it, or await it, to get the client first",
        FutureWarning,
        stacklevel=3,
    )


class _ClientFuture(APIFuture[C], Generic[C]):
    _client_name = "client"

    def __init__(self, future: APIFuture[C]) -> None:
        self._op = future

    def result(self, timeout: float | None = None) -> C:
        return self._op.result(timeout)

    async def result_async(self, timeout: float | None = None) -> C:
        return await self._op.result_async(timeout)

    def future(self) -> ConcurrentFuture[C]:
        return self._op.future()

    def __repr__(self) -> str:
        fut = self._op.future()
        if not fut.done():
            state = "pending"
        elif fut.cancelled():
            state = "cancelled"
        elif fut.exception() is not None:
            state = f"failed: {fut.exception()!r}"
        else:
            state = repr(fut.result())
        return f"<{type(self).__name__}: {state}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        _warn(self._client_name, f".{name}")
        return getattr(self._op.result(), name)


def _forwarders(client_cls: type, future_cls: type) -> None:
    """Give ``future_cls`` one deprecated forwarding method per public method of ``client_cls``."""
    for name, member in inspect.getmembers(client_cls):
        if name.startswith("_") or name in future_cls.__dict__ or not callable(member):
            continue
        if isinstance(inspect.getattr_static(client_cls, name), staticmethod):
            continue
        if inspect.iscoroutinefunction(member):

            def make_async(name: str, member: Any) -> Any:
                @functools.wraps(member)
                async def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
                    _warn(self._client_name, f"{name}()")
                    client = await self._op
                    return await getattr(client, name)(*args, **kwargs)

                return forward

            setattr(future_cls, name, make_async(name, member))
        else:

            def make_sync(name: str, member: Any) -> Any:
                @functools.wraps(member)
                def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
                    _warn(self._client_name, f"{name}()")
                    return getattr(self._op.result(), name)(*args, **kwargs)

                return forward

            setattr(future_cls, name, make_sync(name, member))


class BackcompatTrainingClientFuture(_ClientFuture[TrainingClient], TrainingClient):
    """A future of a TrainingClient that also works (deprecated) as the client."""

    _client_name = "TrainingClient"


class BackcompatSamplingClientFuture(_ClientFuture[SamplingClient], SamplingClient):
    """A future of a SamplingClient that also works (deprecated) as the client."""

    _client_name = "SamplingClient"


_forwarders(TrainingClient, BackcompatTrainingClientFuture)
_forwarders(SamplingClient, BackcompatSamplingClientFuture)

TrainingClientFuture = BackcompatTrainingClientFuture
SamplingClientFuture = BackcompatSamplingClientFuture
