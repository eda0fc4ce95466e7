"""SamplingClient: sample from a base model or saved weights; prompt logprobs.

``sample`` submits through the runtime's sampling admission (a FIFO budget of
concurrent requests and estimated bytes; a 429 resubmits the same body, same
seq_id), then hands the server future to the poller: from the ack on, a
pending sample is records (its call, its future, the poller's handle), not a
task. Protocol rules it follows:

* every sampled sequence gets its ``sequence_id`` from the submit's
  ``sample_sequence_ids``. A server that does not send them gets synthesized
  ids (``<request_id>:<i>``) instead of a failure: the official SDK cannot
  sample from such a server; we can;
* a 410 on the future means the server forgot it: the sample is resubmitted
  with a *new* seq_id and a *new* idempotency key (the old key names the
  dead request on the server), after a short jittered backoff.

Like the official SDK's sampling retry handler, one sample is retried as a
whole until its budget (``ServiceConfig.sample_retry_budget_s``, 7,200 s by
default; ``total_retry_timeout=`` per call) runs out: transient submit
failures in the transport under one key and seq_id, 429 in sampling
admission, 410 here. Past the budget the last typed error is raised, saying
how many attempts it made. Each resubmission round ``r`` derives its key from
the call's (``<key>~r<r>``), so a caller that passes its own
``idempotency_key`` gets the same keys again after a process restart.

A SamplingClient is picklable and has a string handle
(:meth:`get_sampler_handle` / :meth:`from_sampler_handle`); neither carries
credentials. Unpickled in a process with an open ServiceClient for the same
base URL, it samples through that service; otherwise it must be attached with
``SamplingClient.from_sampler_handle(handle, service_client)``.
"""

from __future__ import annotations

import base64
import json
import math
import random
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

import msgspec
import outcome
import trio

from .._log import get_logger
from ..errors import GoneError, ServiceClosedError, gave_up
from ..runtime.admission import estimate_bytes
from ..transport.options import IdempotencyKey
from ..wire import types as wt
from ..wire.validate import validate_sample
from ._base import ClientContext, RawView, take_options
from .futures import APIFuture, FutureState, detach, fail_unstarted, settle, start_later
from .tokenizer import load_tokenizer

__all__ = ["SamplingClient", "register_context"]

log = get_logger(__name__)

_SEQ_STRIDE = 1_000_000_000
_RESUBMIT_BACKOFF = (0.5, 10.0)  # first and largest wait before a resubmission after a 410

# The open contexts of this process, newest last, so an unpickled client can
# find a service to sample through without carrying credentials.
_CONTEXTS: list[weakref.ref[ClientContext]] = []


def register_context(ctx: ClientContext) -> None:
    _CONTEXTS.append(weakref.ref(ctx))


def _find_context(base_url: str | None) -> ClientContext | None:
    for ref in reversed(_CONTEXTS):
        ctx = ref()
        if ctx is not None and not ctx.closed and (base_url is None or ctx.base_url == base_url):
            return ctx
    return None


class SamplingClient:
    """Samples from one sampler (``sampling_session_id``); see the module docstring."""

    def __init__(
        self,
        ctx: ClientContext | None,
        sampling_session_id: str,
        *,
        base_model: str | None = None,
        model_path: str | None = None,
        record_stability_info: bool = False,
        base_url: str | None = None,
        clone_id: int = 0,
    ) -> None:
        self._ctx = ctx
        self.sampling_session_id = sampling_session_id
        self.base_model = base_model
        self.model_path = model_path
        self.record_stability_info = record_stability_info
        self._base_url = base_url or (ctx.base_url if ctx is not None else None)
        self._clone_id = clone_id
        self._next_seq = clone_id * _SEQ_STRIDE
        # A copy (unpickled, or from a handle) asks the server for its clone id before its
        # first sample when the server's sample_join_sampling_session flag says so.
        self._join_pending = False
        self._join_lock: Any = None

    def __repr__(self) -> str:
        return f"SamplingClient(sampling_session_id={self.sampling_session_id!r}, base_model={self.base_model!r})"

    @property
    def with_raw_response(self) -> RawView:
        return RawView(self)

    def _context(self) -> ClientContext:
        if self._ctx is None or self._ctx.closed:
            self._ctx = _find_context(self._base_url)
        if self._ctx is None:
            raise ServiceClosedError(
                "this SamplingClient has no open service in this process; "
                "use SamplingClient.from_sampler_handle(handle, service_client)"
            )
        return self._ctx

    async def _join_if_asked(self, ctx: ClientContext) -> None:
        """Take the clone id the server hands out (join_sampling_session), once, when it asks for that.

        Until then this copy used a random seq_id block; the seq_ids it reserved
        keep their offset within the block.
        """
        if not self._join_pending:
            return
        if not ctx.flags.sample_join_sampling_session:
            self._join_pending = False
            return
        if self._join_lock is None:
            import trio

            self._join_lock = trio.Lock()
        async with self._join_lock:
            if not self._join_pending:
                return
            answer = await ctx.api.service.join_sampling_session(
                wt.JoinSamplingSessionRequest(sampling_session_id=self.sampling_session_id)
            )
            old_base = self._clone_id * _SEQ_STRIDE
            self._clone_id = int(answer.client_counter)
            self._next_seq = self._clone_id * _SEQ_STRIDE + (self._next_seq - old_base)
            self._join_pending = False
            log.info("sampling_session_joined", sampling_session_id=self.sampling_session_id, clone_id=self._clone_id)

    def _rebase_seq_id(self, seq_id: int) -> int:
        """``seq_id`` moved into this client's current block (after a join)."""
        return self._clone_id * _SEQ_STRIDE + seq_id % _SEQ_STRIDE

    def _reserve_seq_id(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    # -- sampling -------------------------------------------------------------------------------

    def sample(
        self,
        prompt: wt.ModelInput,
        num_samples: int,
        sampling_params: wt.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: wt.TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[wt.SampleResponse]:
        """Generate ``num_samples`` continuations of ``prompt``.

        Options as in the SDK (protocol §4): ``include_prompt_logprobs`` scores
        the prompt (element 0 is None), ``topk_prompt_logprobs`` /
        ``topk_sample_logprobs`` return the k best alternatives per position,
        ``target_prompt_logprobs`` scores given token ids per prompt position,
        ``prompt_alt_tokens_k`` draws k alternatives per prompt position,
        ``prompt_logprobs_last_n`` scores only the last n prompt tokens.

        The result's arrays are numpy views over the response body (whatever
        the wire annotations say): ``seq.tokens`` is int32, ``seq.logprobs``
        float32; ``seq.tokens_list`` / ``seq.logprobs_list`` give lists.
        """
        if num_samples < 1:
            raise ValueError("num_samples must be at least 1")
        opts = take_options("sample", options)
        ctx = self._context()
        # Built with the seq_id it will use, but the seq_id is spent only once
        # validation passed: bad input is refused before anything is sent.
        request = wt.SampleRequest(
            num_samples=num_samples,
            prompt=prompt,
            sampling_params=sampling_params,
            sampling_session_id=self.sampling_session_id,
            seq_id=self._next_seq,
            prompt_logprobs=include_prompt_logprobs or prompt_logprobs_last_n is not None,
            topk_prompt_logprobs=topk_prompt_logprobs,
            topk_sample_logprobs=topk_sample_logprobs,
            target_prompt_logprobs=target_prompt_logprobs,
            prompt_alt_tokens_k=prompt_alt_tokens_k,
            prompt_logprobs_last_n=prompt_logprobs_last_n,
            record_stability_info=self.record_stability_info or None,
        )
        validate_sample(request)
        self._reserve_seq_id()
        try:
            prompt_tokens = prompt.length
        except ValueError:
            prompt_tokens = 0
        call = _SampleCall(
            self, ctx, request, opts, raw_response,
            estimate_bytes(prompt_tokens + (sampling_params.max_tokens or 0) * num_samples),
            _expected_result_bytes(
                prompt_tokens, num_samples, sampling_params.max_tokens,
                prompt_logprobs=request.prompt_logprobs
                or target_prompt_logprobs is not None or prompt_alt_tokens_k > 0,
                topk=max(topk_prompt_logprobs, topk_sample_logprobs, prompt_alt_tokens_k),
            ),
        )
        ctx.admit(call)
        return call.fut

    async def sample_async(self, *args: Any, **kwargs: Any) -> APIFuture[wt.SampleResponse]:
        """The official SDK's ``sample_async``: :meth:`sample` (same arguments), for code written
        against the SDK. ``await client.sample_async(...)`` gives the future; await that for the result."""
        return self.sample(*args, **kwargs)

    async def compute_logprobs_async(self, *args: Any, **kwargs: Any) -> APIFuture[list[float | None]]:
        """The official SDK's ``compute_logprobs_async``: :meth:`compute_logprobs` (same arguments),
        for code written against the SDK; await the returned future for the logprobs."""
        return self.compute_logprobs(*args, **kwargs)

    def compute_logprobs(
        self, prompt: wt.ModelInput, prompt_logprobs_last_n: int | None = None, **options: Any
    ) -> APIFuture[list[float | None]]:
        """Logprob of every prompt token given the ones before it (element 0 is None)."""
        sampled = self.sample(
            prompt, 1, wt.SamplingParams(max_tokens=1), include_prompt_logprobs=True,
            prompt_logprobs_last_n=prompt_logprobs_last_n, **options,
        )

        async def run(fut: APIFuture[Any]) -> Any:
            response = await sampled
            fut.set_request_id(sampled.request_id)
            return response.prompt_logprobs_list or []

        return self._context().start("compute_logprobs", run, on_cancel=lambda _: sampled.cancel())

    # -- facts ------------------------------------------------------------------------------------

    def get_base_model(self) -> str | None:
        return self.base_model

    def get_tokenizer(self) -> Any:
        """The tokenizer of the base model (byte tokenizer for local models)."""
        return load_tokenizer(None, self.base_model)

    # -- handles and pickling -------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "sampling_session_id": self.sampling_session_id,
            "base_model": self.base_model,
            "model_path": self.model_path,
            "record_stability_info": self.record_stability_info,
            "base_url": self._base_url,
        }

    def get_sampler_handle(self) -> str:
        """A credential-free string naming this sampler; any process can sample with it."""
        payload = json.dumps(self._state(), separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode()

    @staticmethod
    def from_sampler_handle(handle: str, service_client: Any = None) -> SamplingClient:
        """A client for the sampler behind ``handle``, sampling through ``service_client``
        (or, when omitted, the open ServiceClient of this process for the same base URL)."""
        state = json.loads(base64.urlsafe_b64decode(handle.encode()))
        ctx = getattr(service_client, "_ctx", None)
        return _rebuild(state, ctx)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_unpickle, (self._state(),))


def _rebuild(state: Mapping[str, Any], ctx: ClientContext | None) -> SamplingClient:
    # A copy draws a fresh seq_id range so two processes never reuse a seq_id
    # (random, or the server's clone counter when its flag asks for joining).
    client = SamplingClient(
        ctx,
        state["sampling_session_id"],
        base_model=state.get("base_model"),
        model_path=state.get("model_path"),
        record_stability_info=bool(state.get("record_stability_info")),
        base_url=state.get("base_url"),
        clone_id=random.randint(1, 1_000_000),
    )
    client._join_pending = True
    return client


def _unpickle(state: Mapping[str, Any]) -> SamplingClient:
    return _rebuild(state, None)


class _SampleCall:
    """One sample from ``sample()`` to its result, as a record wherever it waits.

    Until sampling admission grants it a slot it is only this record (the
    request Struct, shared prompt and params, its future), waiting in the
    admission backlog: no task, no encoded body (see runtime.admission). Once
    admitted, :meth:`run` is its task only until the server acknowledges the
    request: it then hands the server future to the poller as a record and
    ends. The poller's worker that gets the result calls :meth:`_done`, which
    resolves the future, or after a 410 sends the sample through admission
    again under a new seq_id.
    """

    __slots__ = (
        "client", "ctx", "request", "opts", "raw_response", "estimated_bytes", "expected_bytes", "fut",
        "charged", "sequence_ids", "resubmits", "budget", "deadline", "started", "key",
    )

    def __init__(
        self, client: SamplingClient, ctx: ClientContext, request: wt.SampleRequest, opts: dict[str, Any],
        raw_response: bool, estimated_bytes: int, expected_bytes: int | None,
    ) -> None:
        self.client = client
        self.ctx = ctx
        self.request = request
        self.opts = opts
        self.raw_response = raw_response
        self.estimated_bytes = estimated_bytes
        self.expected_bytes = expected_bytes
        self.fut: APIFuture[Any] = APIFuture(name="sample")
        self.charged: int | None = None
        self.sequence_ids: list[str] | None = None  # from the server's ack
        self.resubmits = 0
        budget = opts.get("total_retry_timeout")
        if budget is None:
            budget = getattr(getattr(ctx.service, "config", None), "sample_retry_budget_s", None)
        self.budget: float | None = budget
        self.deadline = math.inf  # set when the first submit starts: queueing is not retrying
        self.started = 0.0
        key = opts.get("idempotency_key", IdempotencyKey.AUTO)
        # one key per call, kept across every retry; resubmission rounds derive theirs from it
        self.key: str | IdempotencyKey = f"tinker-actors-{uuid.uuid4()}" if key is IdempotencyKey.AUTO else key

    # -- the admission ticket -----------------------------------------------------------------
    @property
    def abandoned(self) -> bool:
        return self.fut.done()

    def admit(self, charged: int) -> None:
        self.charged = charged
        if not start_later(self.fut, self.ctx.nursery, self.run):
            self.ctx.admission.release(charged)

    def close(self, error: BaseException) -> None:
        fail_unstarted(self.fut, error)

    # -- the task, until the ack ------------------------------------------------------------------
    def _call_options(self) -> dict[str, Any]:
        """This round's options: its idempotency key and what is left of the sample's budget."""
        opts = dict(self.opts)
        key = self.key
        if isinstance(key, str) and self.resubmits:
            key = f"{key}~r{self.resubmits}"
        opts["idempotency_key"] = key
        if self.deadline != math.inf:
            opts["total_retry_timeout"] = max(0.0, self.deadline - trio.current_time())
        else:
            opts.pop("total_retry_timeout", None)
        return opts

    async def run(self, fut: APIFuture[Any]) -> Any:
        if self.client._join_pending:
            await self.client._join_if_asked(self.ctx)
            rebased = self.client._rebase_seq_id(self.request.seq_id or 0)
            if rebased != self.request.seq_id:
                self.request = msgspec.structs.replace(self.request, seq_id=rebased)
        ctx, request = self.ctx, self.request
        charged, self.charged = self.charged, None
        if self.deadline == math.inf:
            self.started = trio.current_time()
            if self.budget is not None:
                self.deadline = self.started + self.budget
        deadline = None if self.deadline == math.inf else self.deadline
        sampling = ctx.api.sampling
        if self.raw_response:
            return await ctx.admission.submit(
                lambda: sampling.with_raw_response.asample(request, **self._call_options()),
                estimated_bytes=self.estimated_bytes, charged=charged, deadline=deadline,
            )
        ack = await ctx.admission.submit(
            lambda: sampling.asample(request, **self._call_options()),
            estimated_bytes=self.estimated_bytes, charged=charged, deadline=deadline,
        )
        self.sequence_ids = ack.sample_sequence_ids
        # the record is its own done callback (no bound method to keep per sample)
        ctx.track(
            fut, ack.request_id, wt.SampleResponse, "Sample", self,
            sampling_session_id=request.sampling_session_id, expected_bytes=self.expected_bytes,
        )
        return detach(fut)

    # -- the poller's callback ----------------------------------------------------------------------
    def __call__(self, handle: Any) -> None:
        fut = self.fut
        if fut.done():
            return
        error = handle.exception()
        if error is None:
            try:
                value = _with_sequence_ids(handle._value, handle.request_id, self.sequence_ids)
            except Exception as exc:
                settle(fut, outcome.Error(exc))
            else:
                settle(fut, outcome.Value(value))
            return
        if isinstance(error, GoneError):
            wait = random.uniform(0.5, 1.0) * min(_RESUBMIT_BACKOFF[1], _RESUBMIT_BACKOFF[0] * 2.0**self.resubmits)
            if trio.current_time() + wait > self.deadline:
                settle(fut, outcome.Error(gave_up(error, attempts=self.resubmits + 1,
                                                  elapsed=trio.current_time() - self.started, budget=self.budget)))
                return
            # The server forgot this request; the protocol says resubmit under a new seq_id.
            self.resubmits += 1
            log.info("sample_resubmit_after_410", request_id=handle.request_id, attempt=self.resubmits, wait=round(wait, 3))
            self.request = msgspec.structs.replace(self.request, seq_id=self.client._reserve_seq_id())
            self.sequence_ids = None
            fut.track(None)
            fut.set_state(FutureState.QUEUED)
            try:
                self.ctx.nursery.start_soon(self._resubmit, wait)
            except RuntimeError as exc:  # the service closed meanwhile
                settle(fut, outcome.Error(ServiceClosedError(str(exc))))
            return
        settle(fut, outcome.Error(error))

    async def _resubmit(self, wait: float) -> None:
        await trio.sleep(wait)
        if self.fut.done():  # cancelled while waiting
            return
        try:
            self.ctx.admit(self)
        except Exception as exc:  # the service closed meanwhile
            settle(self.fut, outcome.Error(exc if isinstance(exc, ServiceClosedError) else ServiceClosedError(str(exc))))


def _expected_result_bytes(
    prompt_tokens: int, num_samples: int, max_tokens: int | None, *, prompt_logprobs: bool, topk: int
) -> int | None:
    """A generous upper estimate of a SampleResponse's protobuf size; None when unknown.

    Per sampled token: the token id and its logprob (≤ 16 bytes with framing),
    plus k alternatives of the same size; prompt scoring adds as much per
    prompt token. The poller only uses it to skip complete_metadata for
    small results, so erring high merely keeps the metadata step.
    """
    if max_tokens is None or max_tokens <= 0:
        return None
    per_token = 16 * (1 + topk)
    size = 256 + num_samples * (64 + max_tokens * per_token)
    if prompt_logprobs:
        size += prompt_tokens * per_token
    return size


def _with_sequence_ids(response: wt.SampleResponse, request_id: str, sequence_ids: list[str] | None) -> wt.SampleResponse:
    ids = list(sequence_ids or [])
    if len(ids) != len(response.sequences):
        # Older servers send none: synthesize stable ids rather than fail.
        if ids:
            log.warning("sample_sequence_ids_mismatch", expected=len(response.sequences), got=len(ids))
        ids = [f"{request_id}:{i}" for i in range(len(response.sequences))]
    sequences = [
        seq if seq.sequence_id else msgspec.structs.replace(seq, sequence_id=sid)
        for seq, sid in zip(response.sequences, ids, strict=True)
    ]
    return msgspec.structs.replace(response, sequences=sequences)
