"""What every public client shares: the runtime context and the per-call options.

``ClientContext`` is the one place the clients touch the runtime: the open
service (session id, server flags, requester, poller, sampling admission), the
nursery futures run in, the session-wide counters (model_seq_id,
sampling_session_seq_id) and one training sequencer per
model. Every client of one ServiceClient shares one context.

Every public method takes the same per-call options (``timeout``,
``max_retries``, ``total_retry_timeout``, ``idempotency_key``,
``extra_headers``, ``extra_query``, ``extra_body``) and ``raw_response=True`` to get the HTTP answer of the call
(for operations that return a server future: the submit's answer) instead of
the decoded result. ``client.with_raw_response.method(...)`` is the same as
passing ``raw_response=True``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypedDict, TypeVar

import trio

from .._log import get_logger
from ..api import API
from ..errors import ServiceClosedError
from ..runtime.admission import SamplingAdmission
from ..runtime.config import ServerFlags
from ..runtime.poller import FutureHandle, FuturePoller, FutureSpec
from ..runtime.service import Service
from ..runtime.sequencer import TrainingSequencer
from ..transport.options import IdempotencyKey
from .futures import APIFuture, start_future

__all__ = ["CallOptions", "OPTION_NAMES", "ClientContext", "take_options", "RawView"]

log = get_logger(__name__)
T = TypeVar("T")


class CallOptions(TypedDict, total=False):
    timeout: float
    max_retries: int
    total_retry_timeout: float  # seconds; for sample(): the whole sample, resubmits included
    idempotency_key: str | IdempotencyKey
    extra_headers: Mapping[str, str]
    extra_query: Mapping[str, Any]
    extra_body: Mapping[str, Any]


OPTION_NAMES = frozenset(CallOptions.__annotations__)
_NO_OPTIONS: dict[str, Any] = {}  # never mutated: callers only splat options into calls


def take_options(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The per-call options, checked; an unknown name is a TypeError like any bad keyword."""
    unknown = set(options) - OPTION_NAMES
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    if not options:
        return _NO_OPTIONS  # shared: thousands of queued samples each kept an empty dict
    return {k: v for k, v in options.items() if v is not None}


class RawView:
    """``client.with_raw_response``: the client's methods with ``raw_response=True``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        if not callable(method):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, raw_response=True, **kwargs)

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call


class ClientContext:
    """The runtime as the clients see it (see module docstring)."""

    def __init__(self, service: Service, nursery: trio.Nursery, *, base_url: str | None = None) -> None:
        self.service = service
        self.nursery = nursery
        self.base_url = base_url or service.config.base_url
        # The service's own request() refuses work once it closes or its session expired.
        self.api = API(service)
        self.poller: FuturePoller = service.poller
        self.admission: SamplingAdmission = service.sampling_admission
        self._model_seq = itertools.count()
        self._sampling_seq = itertools.count()
        self._sequencers: dict[str, TrainingSequencer] = {}
        self.closed = False

    # -- session facts -------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return str(self.service.session_id)

    @property
    def flags(self) -> ServerFlags:
        return self.service.server_flags

    def next_model_seq_id(self) -> int:
        return next(self._model_seq)

    def next_sampling_session_seq_id(self) -> int:
        return next(self._sampling_seq)

    def sequencer(self, model_id: str, *, first_seq_id: int = 1) -> TrainingSequencer:
        """The model's sequencer, made by the runtime on first use."""
        seq = self._sequencers.get(model_id)
        if seq is None:
            seq = self._sequencers[model_id] = self.service.new_sequencer(model_id, first_seq_id=first_seq_id)
        return seq

    # -- futures ---------------------------------------------------------------------------

    def start(
        self,
        name: str,
        fn: Callable[[APIFuture[T]], Awaitable[T]],
        *,
        on_cancel: Callable[[APIFuture[Any]], None] | None = None,
    ) -> APIFuture[T]:
        if self.closed:
            raise ServiceClosedError(f"{name}: the service client is closed")
        return start_future(self.nursery, fn, name=name, on_cancel=on_cancel)

    def admit(self, ticket: Any) -> None:
        """Start a sample-like ``ticket`` through sampling admission: its task starts now when a
        slot is free and nobody queues, else it waits in the admission backlog as it is
        (see runtime.admission)."""
        if self.closed:
            raise ServiceClosedError("sample: the service client is closed")
        charged = self.admission.admit_now(ticket.estimated_bytes)
        if charged is not None:
            ticket.admit(charged)
        elif self.admission.enqueue(ticket):
            self.nursery.start_soon(self.admission.pump, name="sampling-admission-pump")

    def track(
        self,
        fut: APIFuture[Any],
        request_id: str,
        result_type: Any,
        request_type: str,
        on_done: Callable[[FutureHandle], None],
        *,
        sampling_session_id: str | None = None,
        expected_bytes: int | None = None,
    ) -> FutureHandle:
        """Hand a server future to the runtime's poller, mirroring its state on ``fut``.

        Nothing waits in a task: the poller's workers poll it and call
        ``on_done(handle)`` when it ends; ``fut.cancel()`` cancels it (and,
        where supported, on the server: the future tracks the handle). ``expected_bytes``: an upper estimate
        of the result's size; a small one lets the poller skip the
        complete_metadata round trip (see runtime.poller)."""
        handle = self._register(fut, request_id, result_type, request_type, sampling_session_id, expected_bytes, on_done)
        if not handle.done:
            fut.track(handle)
        return handle

    async def resolve(
        self,
        fut: APIFuture[Any],
        request_id: str,
        result_type: Any,
        request_type: str,
        *,
        sampling_session_id: str | None = None,
        expected_bytes: int | None = None,
    ) -> Any:
        """Wait in this task for a server future polled by the runtime's poller, mirroring
        its state on ``fut``; cancelled meanwhile, the server future is cancelled too."""
        handle = self._register(fut, request_id, result_type, request_type, sampling_session_id, expected_bytes)
        fut.track(handle)
        return await handle.result(cancel_on_abandon=True)

    def _register(
        self,
        fut: APIFuture[Any],
        request_id: str,
        result_type: Any,
        request_type: str,
        sampling_session_id: str | None,
        expected_bytes: int | None,
        on_done: Callable[[FutureHandle], None] | None = None,
    ) -> FutureHandle:
        fut.set_request_id(request_id)
        spec = FutureSpec(
            request_id=request_id,
            result_type=result_type,
            request_type=request_type,
            sampling_session_id=sampling_session_id,
            expected_bytes=expected_bytes,
        )
        return self.poller.register(spec, on_done=on_done)
