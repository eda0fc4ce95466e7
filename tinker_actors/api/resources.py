"""Endpoint-level resources: one typed async method per route of the table.

This is the layer the gap analyses call *resources* (the SDK's
``AsyncServiceResource``, ``AsyncModelsResource``...). A method takes the
route's typed request Struct (when it has a body), the route's path and query
parameters as keywords, and the per-call options every method shares::

    info = await api.models.get_info(GetInfoRequest(model_id=mid), timeout=5)
    raw = await api.models.with_raw_response.get_info(GetInfoRequest(model_id=mid))
    raw.status, raw.headers, raw.content

Methods are generated from :data:`tinker_actors.api.endpoints.ENDPOINTS`
(``method = route("name")``), so no route is written twice. A resource only
needs a *requester*: anything with the transport's ``request(resource, method,
path, *, json, content, content_type, accept, headers, options, decode)``
(the :class:`~tinker_actors.transport.Transport` itself, or the runtime's
pool actors).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

from ..errors import ValidationError
from ..transport.options import AUTO, IdempotencyKey, RawResponse, RequestOptions, SignedURL
from .endpoints import PROTOBUF, Endpoint, endpoint

__all__ = [
    "API",
    "Requester",
    "Resource",
    "route",
    "ServiceResource",
    "ModelsResource",
    "WeightsResource",
    "FuturesResource",
    "TrainingResource",
    "SamplingResource",
    "TelemetryResource",
    "RestResource",
    "wire_type",
    "build_options",
]


class Requester(Protocol):
    async def request(self, resource: Any, method: str, path: str, **kwargs: Any) -> Any: ...


@functools.cache
def wire_type(name: str | None) -> Any:
    """The wire Struct called ``name`` (None: no body)."""
    if name is None:
        return None
    types = importlib.import_module("tinker_actors.wire.types")
    return getattr(types, name)


def build_options(
    ep: Endpoint | None = None,
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
    idempotency_key: str | IdempotencyKey | None = None,
    extra_headers: Mapping[str, str] | None = None,
    extra_query: Mapping[str, Any] | None = None,
    extra_body: Mapping[str, Any] | None = None,
    raw: bool = False,
    total_retry_timeout: float | None = None,
) -> RequestOptions:
    """RequestOptions for one call: the caller's values, else the route's defaults.

    A route whose 429 belongs to sampling admission (policy ``sample``) raises
    it at once instead of retrying it in the transport.
    """
    return RequestOptions(
        timeout=timeout if timeout is not None else (ep.timeout if ep else None),
        max_retries=max_retries if max_retries is not None else (ep.max_retries if ep else None),
        total_retry_timeout=total_retry_timeout,
        defer_429=bool(ep and ep.retry == "sample"),
        idempotency_key=AUTO if idempotency_key is None else idempotency_key,
        extra_headers=dict(extra_headers) if extra_headers else None,
        extra_query={k: str(v) for k, v in extra_query.items()} if extra_query else None,
        extra_body=dict(extra_body) if extra_body else None,
        raw=raw,
        signed_url=bool(ep and ep.signed_url),
    )


def _encode_protobuf(request: Any) -> bytes:
    from ..wire import protobuf  # protobuf is only needed for these bodies

    # ForwardRequest carries forward_only itself; the converter reads the type.
    return protobuf.forward_backward_request_to_proto(request)


def _query_string_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Resource:
    """A group of routes bound to one requester. ``with_raw_response`` gives the same routes raw."""

    def __init__(self, requester: Requester, *, raw: bool = False) -> None:
        self._requester = requester
        self._raw = raw

    @functools.cached_property
    def with_raw_response(self) -> Any:
        """The same resource whose methods return :class:`RawResponse` (status, headers, body)."""
        return type(self)(self._requester, raw=True)

    async def _call(
        self,
        ep: Endpoint,
        request: Any = None,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        idempotency_key: str | IdempotencyKey | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        total_retry_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        decode: Any = None,
        **params: Any,
    ) -> Any:
        path_names = ep.path_params
        unknown = set(params) - set(path_names) - set(ep.query)
        if unknown:
            raise TypeError(f"{ep.name}() got unexpected arguments: {', '.join(sorted(unknown))}")
        missing = [n for n in path_names if params.get(n) in (None, "")]
        if missing:
            raise ValidationError(f"{ep.name} needs {', '.join(missing)}", field=missing[0])
        # A checkpoint id is "weights/<name>": its slash is part of the path.
        path = ep.path.format(
            **{n: quote(str(params[n]), safe="/" if n == "checkpoint_id" else "") for n in path_names}
        )
        query = {
            k: _query_string_value(params.get(k, default))
            for k, default in ep.query.items()
            if params.get(k, default) is not None
        }
        if extra_query:
            query.update({k: _query_string_value(v) for k, v in extra_query.items()})
        wanted = wire_type(ep.request)
        if ep.body != "none" and wanted is not None and request is not None and not isinstance(request, wanted):
            raise ValidationError(
                f"{ep.name} takes a {ep.request}, not {type(request).__name__}", field="request"
            )
        if ep.body != "none" and request is None and wanted is not None:
            raise ValidationError(f"{ep.name} needs a {ep.request}", field="request")
        options = build_options(
            ep,
            timeout=timeout,
            max_retries=max_retries,
            idempotency_key=idempotency_key,
            extra_headers=extra_headers,
            extra_query=query or None,
            extra_body=extra_body,
            raw=self._raw,
            total_retry_timeout=total_retry_timeout,
        )
        kwargs: dict[str, Any] = {}
        call_headers = {**ep.headers, **(headers or {})}
        if ep.body == "protobuf":
            content = _encode_protobuf(request)
            if _compress_fwdbwd(self._requester):
                # the server asked for it (proto_compress_fwdbwd): forward_backward bodies are
                # token ids and floats that zstd shrinks many times over
                content = _zstd().compress(content)
                call_headers["Content-Encoding"] = "zstd"
            kwargs["content"] = content
            kwargs["content_type"] = PROTOBUF
        elif ep.body == "json" and request is not None:
            kwargs["json"] = request
        elif ep.body == "json" and ep.method != "GET" and extra_body:
            kwargs["json"] = {}
        result = await self._requester.request(
            ep.resource,
            ep.method,
            path,
            accept=ep.accept,
            headers=call_headers or None,
            options=options,
            decode=decode if decode is not None else (wire_type(ep.response) or _ignore_body),
            **kwargs,
        )
        return result


def _compress_fwdbwd(requester: Any) -> bool:
    """Whether the server's flags ask for zstd forward_backward bodies (a bare transport has no flags)."""
    return bool(getattr(getattr(requester, "server_flags", None), "proto_compress_fwdbwd", False))


def _zstd() -> Any:
    import zstandard

    return zstandard.ZstdCompressor()  # one per body: a compressor is not safe across threads


def _ignore_body(raw: RawResponse) -> None:
    return None


def route(name: str, doc: str | None = None) -> Any:
    """A resource method generated from the ENDPOINTS row ``name``."""
    ep = endpoint(name)

    async def method(self: Resource, request: Any = None, /, **kwargs: Any) -> Any:
        return await self._call(ep, request, **kwargs)

    method.__name__ = name
    params = ", ".join([*ep.path_params, *ep.query])
    req = f"request: {ep.request}, " if ep.request else ""
    returns = "SignedURL" if ep.signed_url else (ep.response or "None")
    method.__doc__ = (doc or f"{ep.method} /api/v1/{ep.path}") + (
        f"\n\n``({req}*{', ' + params if params else ''}, timeout, max_retries, idempotency_key, "
        f"extra_headers, extra_query, extra_body) -> {returns}`` on the {ep.resource.value} pool."
    )
    method.endpoint = ep  # type: ignore[attr-defined]
    return method


class ServiceResource(Resource):
    """Server capabilities, health, sessions, sampling sessions (SESSION pool)."""

    get_server_capabilities = route("get_server_capabilities", "Models the server can train and sample.")
    health_check = route("health_check", "GET /api/v1/healthz: is the server up.")
    client_config = route("client_config", "The server's client flags (protocol §2).")
    dynamic_config = route("dynamic_config", "Flags the server may change while a session runs.")
    create_session = route("create_session", "Open a session.")
    session_heartbeat = route("session_heartbeat", "Keep a session alive.")
    finish_session = route("finish_session", "Close a session with a reason.")
    create_sampling_session = route("create_sampling_session", "Open a sampler on a base model or weights.")
    join_sampling_session = route("join_sampling_session", "Join an existing sampler (clone counter).")


class ModelsResource(Resource):
    """Training models: create, describe, unload."""

    create = route("create_model", "Create a LoRA training model (a future of CreateModelResponse).")
    get_info = route("get_info", "Describe a model.")
    unload = route("unload_model", "Unload a model and free its resources (a future).")


class WeightsResource(Resource):
    """Checkpoints: load, save, list, delete, archive URL.

    ``list``, ``delete_checkpoint`` and ``get_checkpoint_archive_url`` take
    the model id (= training run id) and checkpoint id positionally, as the
    SDK's ``AsyncWeightsResource`` does; ``training_run_id=`` is accepted too.
    """

    load = route("load_weights", "Load a checkpoint into a model, or create a model from one (a future).")
    save = route("save_weights", "Save a training checkpoint (a future of SaveWeightsResponse).")
    save_for_sampler = route("save_weights_for_sampler", "Save weights for sampling (a future).")
    save_external = route("save_weights_external", "Export weights to external storage (a future).")

    async def list(self, model_id: str | None = None, /, *, training_run_id: str | None = None,
                   **kwargs: Any) -> Any:
        """GET training_runs/{model_id}/checkpoints: a model's checkpoints (CheckpointsListResponse)."""
        return await self._call(endpoint("list_checkpoints"), training_run_id=_run_id(model_id, training_run_id),
                                **kwargs)

    async def delete_checkpoint(self, model_id: str | None = None, checkpoint_id: str | None = None, /, *,
                                training_run_id: str | None = None, **kwargs: Any) -> None:
        """DELETE training_runs/{model_id}/checkpoints/{checkpoint_id} (``weights/<name>``...)."""
        checkpoint_id = checkpoint_id if checkpoint_id is not None else kwargs.pop("checkpoint_id", None)
        await self._call(endpoint("delete_checkpoint"), training_run_id=_run_id(model_id, training_run_id),
                         checkpoint_id=checkpoint_id, **kwargs)

    async def get_checkpoint_archive_url(self, model_id: str | None = None, checkpoint_id: str | None = None, /,
                                         *, training_run_id: str | None = None, **kwargs: Any) -> SignedURL:
        """A signed URL (with its expiry) to download a checkpoint archive: the server's 302, not followed."""
        checkpoint_id = checkpoint_id if checkpoint_id is not None else kwargs.pop("checkpoint_id", None)
        return await self._call(endpoint("get_checkpoint_archive_url"),  # type: ignore[no-any-return]
                                training_run_id=_run_id(model_id, training_run_id), checkpoint_id=checkpoint_id,
                                **kwargs)

    async def get_archive_url(self, training_run_id: str, checkpoint_id: str, **kwargs: Any) -> SignedURL:
        """Alias of :meth:`get_checkpoint_archive_url`."""
        return await self.get_checkpoint_archive_url(training_run_id, checkpoint_id, **kwargs)


def _run_id(model_id: str | None, training_run_id: str | None) -> str | None:
    if model_id is not None and training_run_id is not None and model_id != training_run_id:
        raise TypeError("pass the model id once (positionally or as training_run_id)")
    return model_id if model_id is not None else training_run_id


class FuturesResource(Resource):
    """Resolving futures: one at a time, batched, cancel."""

    async def retrieve(
        self,
        request: Any,
        /,
        *,
        result_type: Any = None,
        request_type: str | None = None,
        iteration: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """One retrieve_future poll, told apart (try_again / complete_metadata / failed / result).

        ``result_type`` is the Struct a finished future decodes to (protobuf
        for ForwardBackwardOutput and SampleResponse). Without it, a finished
        result comes back as plain JSON builtins.
        """
        from ..wire.futures import classify_future_response

        ep = endpoint("retrieve_future")
        headers: dict[str, str] = {}
        if request_type:
            headers["X-Tinker-Request-Type"] = request_type
        if iteration is not None:
            headers["X-Tinker-Request-Iteration"] = str(iteration)
        if result_type is not None and result_type.__name__ in ("ForwardBackwardOutput", "SampleResponse"):
            headers["Accept"] = f"{PROTOBUF}, application/json"
        target = result_type if result_type is not None else Any

        def decode(raw: RawResponse) -> Any:
            return classify_future_response(raw.content_type, raw.content, target)

        return await self._call(ep, request, headers=headers, decode=decode, **kwargs)

    retrieve_many = route("retrieve_futures", "Completions of a sampling session's futures since a cursor.")
    cancel = route("cancel_future", "Ask the server to drop a request.")


class TrainingResource(Resource):
    """forward, forward_backward (protobuf) and optim_step submits (each returns a future)."""

    forward = route("forward", "Forward only (protobuf ForwardBackwardRequest with forward_only).")
    forward_backward = route("forward_backward", "Forward and backward (protobuf).")
    optim_step = route("optim_step", "Apply the accumulated gradients.")
    create_custom_loss = route("create_custom_loss", "Upload a custom loss graph (server-side losses).")


class SamplingResource(Resource):
    """asample (sent with the sampling backpressure header, no HTTP retries by default)."""

    asample = route("asample", "Submit a sample request (a future of SampleResponse).")


class TelemetryResource(Resource):
    """Telemetry batches. ``send`` never raises (telemetry must not break real work)."""

    send_sync = route("telemetry", "POST a telemetry batch and wait for the server's answer.")

    async def send(self, request: Any, /, **kwargs: Any) -> Any:
        """POST a batch; on failure log and return None instead of raising."""
        from .._log import get_logger
        from ..errors import TinkerActorsError

        try:
            return await self.send_sync(request, **kwargs)
        except TinkerActorsError as exc:
            get_logger(__name__).warning("telemetry_send_failed", error=type(exc).__name__)
            return None


class RestResource(Resource):
    """Training runs, checkpoints, sessions, samplers, weights info."""

    list_training_runs = route("list_training_runs")
    get_training_run = route("get_training_run")
    list_checkpoints = route("list_checkpoints")
    list_user_checkpoints = route("list_user_checkpoints")
    delete_checkpoint = route("delete_checkpoint")
    publish_checkpoint = route("publish_checkpoint")
    unpublish_checkpoint = route("unpublish_checkpoint")
    set_checkpoint_ttl = route("set_checkpoint_ttl")
    get_checkpoint_archive_url = route("get_checkpoint_archive_url")
    get_external_weights_urls = route("get_external_weights_urls")
    weights_info = route("weights_info")
    copy_weights = route("copy_weights")
    list_sessions = route("list_sessions")
    get_session = route("get_session")
    set_session_project = route("set_session_project")
    search_sessions = route("search_sessions")
    session_trace_export = route("session_trace_export", "A session's Perfetto trace export: status, and its URL once ready.")
    get_sampler = route("get_sampler")
    get_audit_log = route("get_audit_log", "Audit events of one UTC day.")
    get_billing_usage = route("get_billing_usage", "Hourly billing usage buckets between two instants.")
    get_current_checkpoint_storage_usage = route("get_current_checkpoint_storage_usage",
                                                 "Checkpoint storage in use now, per project.")


class API:
    """Every resource over one requester: ``api.models.get_info(...)``, ``api.rest.list_sessions()``."""

    def __init__(self, requester: Requester) -> None:
        self.requester = requester
        self.service = ServiceResource(requester)
        self.models = ModelsResource(requester)
        self.weights = WeightsResource(requester)
        self.futures = FuturesResource(requester)
        self.training = TrainingResource(requester)
        self.sampling = SamplingResource(requester)
        self.telemetry = TelemetryResource(requester)
        self.rest = RestResource(requester)
