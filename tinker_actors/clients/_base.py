"""What every public client shares: the runtime context and the per-call options.

``ClientContext`` is the one place the clients touch the runtime: the open
service (session id, server flags, requester, poller, sampling admission), the
nursery futures run in, the session-wide counters (model_seq_id,
sampling_session_seq_id, custom_loss_seq_id) and one training sequencer per
model. Every client of one ServiceClient shares one context.

Every public method takes the same per-call options (``timeout``,
``max_retries``, ``idempotency_key``, ``extra_headers``, ``extra_query``,
``extra_body``) and ``raw_response=True`` to get the HTTP answer of the call
(for operations that return a server future: the submit's answer) instead of
the decoded result. ``client.with_raw_response.method(...)`` is the same as
passing ``raw_response=True``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypedDict, TypeVar

import structlog
import trio

from ..api import API
from ..errors import ServiceClosedError
from ..runtime.admission import SamplingAdmission
from ..runtime.config import ServerFlags
from ..runtime.poller import FutureSpec
from ..runtime.sequencer import TrainingSequencer
from ..transport.options import IdempotencyKey
from .futures import APIFuture, start_future

__all__ = ["CallOptions", "OPTION_NAMES", "ClientContext", "take_options", "RawView"]

log = structlog.get_logger()
T = TypeVar("T")


class CallOptions(TypedDict, total=False):
    timeout: float
    max_retries: int
    idempotency_key: str | IdempotencyKey
    extra_headers: Mapping[str, str]
    extra_query: Mapping[str, Any]
    extra_body: Mapping[str, Any]


OPTION_NAMES = frozenset(CallOptions.__annotations__)


def take_options(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The per-call options, checked; an unknown name is a TypeError like any bad keyword."""
    unknown = set(options) - OPTION_NAMES
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
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

    def __init__(self, service: Any, nursery: trio.Nursery, *, base_url: str | None = None) -> None:
        self.service = service
        self.nursery = nursery
        self.base_url = base_url or getattr(getattr(service, "config", None), "base_url", None)
        # The service's own request() refuses work once it closes or its
        # session expired; the bare actor requester is the fallback.
        requester = service if callable(getattr(service, "request", None)) else service.requester
        self.api = API(requester)
        self.poller = getattr(service, "poller", None)
        admission = getattr(service, "sampling_admission", None) or getattr(service, "admission", None)
        if admission is None:
            flags = self.flags
            admission = SamplingAdmission(
                max_concurrent=flags.sample_max_concurrent_requests,
                byte_budget=flags.sample_dispatch_bytes_semaphore_size,
            )
        self.admission: SamplingAdmission = admission
        self._model_seq = itertools.count()
        self._sampling_seq = itertools.count()
        self._loss_seq = itertools.count()
        self._sequencers: dict[str, TrainingSequencer] = {}
        self.closed = False

    # -- session facts -------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return str(self.service.session_id)

    @property
    def flags(self) -> ServerFlags:
        flags = getattr(self.service, "server_flags", None) or getattr(self.service, "flags", None)
        if callable(flags):
            flags = flags()
        return flags if flags is not None else ServerFlags()

    def next_model_seq_id(self) -> int:
        counter = getattr(self.service, "next_model_seq_id", None)
        return int(counter()) if callable(counter) else next(self._model_seq)

    def next_sampling_session_seq_id(self) -> int:
        counter = getattr(self.service, "next_sampling_session_seq_id", None)
        return int(counter()) if callable(counter) else next(self._sampling_seq)

    def next_custom_loss_seq_id(self) -> int:
        return next(self._loss_seq)

    def sequencer(self, model_id: str, *, first_seq_id: int = 1) -> TrainingSequencer:
        """The model's sequencer (the runtime's when it keeps them, else one of ours)."""
        seq = self._sequencers.get(model_id)
        if seq is None:
            make = getattr(self.service, "new_sequencer", None)
            seq = (
                make(model_id, first_seq_id=first_seq_id)
                if callable(make)
                else TrainingSequencer(model_id, first_seq_id=first_seq_id)
            )
            self._sequencers[model_id] = seq
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
        """Wait for a server future through the runtime's poller, mirroring its state on ``fut``.

        ``expected_bytes``: an upper estimate of the result's size; a small one
        lets the poller skip the complete_metadata round trip (see runtime.poller)."""
        fut.set_request_id(request_id)
        if self.poller is None:
            raise ServiceClosedError("the runtime has no future poller")
        handle = self.poller.register(
            drive=False,
            spec=FutureSpec(
                request_id=request_id,
                result_type=result_type,
                request_type=request_type,
                sampling_session_id=sampling_session_id,
                expected_bytes=expected_bytes,
            )
        )
        fut.track(handle)
        try:
            # Poll in this task (the poller's rules and limits): a second task
            # per future cost more client CPU than anything it bought.
            return await self.poller.wait(handle)
        finally:
            if not handle.done:
                # our future was cancelled while waiting: stop polling (and
                # let the poller tell the server, where it supports cancel).
                handle.cancel()
