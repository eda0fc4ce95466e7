"""RestClient: training runs, checkpoints, sessions and samplers.

Names follow the official SDK 0.38 (plus ``get_checkpoint_archive_url``, which
tinkex keeps and the SDK dropped). ``whoami`` reads a JWT credential's claims
locally; ``export_session_trace`` polls the export job until it is ready. Every method returns an
:class:`~tinker_actors.clients.futures.APIFuture` and takes the per-call
options of ``clients._base``. ``tinker://<run>/<kind>/<name>`` paths are
parsed here; a malformed one is a ValidationError before anything is sent.
Paged listings also have async iterators (``iter_training_runs``,
``iter_user_checkpoints``) that follow the cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timezone
from typing import Any, Literal

import msgspec
import trio

from ..errors import ConfigError, RequestFailedError, ValidationError
from ..transport.options import SignedURL
from ..wire import types as wt
from ._base import ClientContext, RawView, take_options
from .futures import APIFuture

__all__ = ["RestClient", "ParsedTinkerPath", "parse_tinker_path", "whoami_from_credential", "TRACE_EXPORT_POLL_S"]

# How often export_session_trace asks whether the trace is built (the SDK's 5 s).
TRACE_EXPORT_POLL_S = 5.0

AccessScope = Literal["owned", "accessible"]
_KINDS = ("weights", "sampler_weights", "external_weights")


def _rfc3339(value: datetime | str, field: str) -> str:
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f"{value!r} is not an RFC 3339 time", field=field) from None
        return value
    raise ValidationError(f"expected a datetime or an RFC 3339 string, got {type(value).__name__}", field=field)


class ParsedTinkerPath(msgspec.Struct, frozen=True):
    training_run_id: str
    kind: str
    name: str

    @property
    def checkpoint_id(self) -> str:
        """The REST checkpoint id: ``<kind>/<name>``."""
        return f"{self.kind}/{self.name}"


def parse_tinker_path(path: str) -> ParsedTinkerPath:
    """Split ``tinker://<run>/<weights|sampler_weights|external_weights>/<name>``."""
    prefix = "tinker://"
    if not isinstance(path, str) or not path.startswith(prefix):
        raise ValidationError(f"not a tinker path: {path!r}", field="tinker_path")
    parts = path[len(prefix):].split("/")
    if len(parts) != 3 or not all(parts) or parts[1] not in _KINDS:
        raise ValidationError(
            f"a tinker path is tinker://<run>/<{'|'.join(_KINDS)}>/<name>, got {path!r}", field="tinker_path"
        )
    return ParsedTinkerPath(parts[0], parts[1], parts[2])


def whoami_from_credential(credential: str | None) -> wt.WhoamiResponse:
    """The identity in a JWT credential's claims (``sub``, ``org_id``, ``email``); nothing is sent.

    Raises ConfigError for a credential that is not a JWT (a ``tml-`` key has
    no claims) or whose claims lack ``sub`` / ``org_id``. The credential never
    appears in the message.
    """
    if not credential or credential.count(".") != 2 or not credential.startswith("eyJ"):
        raise ConfigError(
            "whoami needs a JWT credential: a plain API key (tml-...) carries no identity claims, "
            "and this client does not exchange it for a JWT"
        )
    payload = credential.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("whoami: the credential's JWT payload is not base64 JSON") from exc
    if not isinstance(claims, dict) or not claims.get("sub") or not claims.get("org_id"):
        raise ConfigError("whoami: the JWT has no 'sub' and 'org_id' claims")
    return wt.WhoamiResponse(
        user_urn=str(claims["sub"]),
        org_urn=f"tml:organization:{claims['org_id']}",
        email=claims.get("email") or None,
    )


class RestClient:
    """REST calls over the service's session; see the module docstring."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx

    def __repr__(self) -> str:
        return f"RestClient(base_url={self._ctx.base_url!r})"

    @property
    def with_raw_response(self) -> RawView:
        return RawView(self)

    def _rest(self, name: str, call: Callable[[Any, dict[str, Any]], Any], raw_response: bool,
              options: dict[str, Any]) -> APIFuture[Any]:
        opts = take_options(name, options)
        rest = self._ctx.api.rest

        async def run(fut: APIFuture[Any]) -> Any:
            return await call(rest.with_raw_response if raw_response else rest, opts)

        return self._ctx.start(name, run)

    # -- admin: audit log, billing and storage usage ----------------------------------------------

    def get_audit_log(self, event_type: Literal["all", "checkpoints", "projects", "teams", "organizations"] = "all",
                      day: date | None = None, *, raw_response: bool = False,
                      **options: Any) -> APIFuture[wt.AuditLogResponse]:
        """Audit events of one UTC ``day`` (today by default) of ``event_type``."""
        if event_type not in wt.AUDIT_EVENT_TYPES:
            raise ValidationError(f"must be one of {', '.join(wt.AUDIT_EVENT_TYPES)}", field="event_type")
        day_text = None if day is None else day.isoformat()
        return self._rest("get_audit_log", lambda r, o: r.get_audit_log(event_type=event_type, day=day_text, **o),
                          raw_response, options)

    def get_billing_usage(self, starting_on: datetime | str, ending_before: datetime | str, *,
                          raw_response: bool = False, **options: Any) -> APIFuture[wt.BillingUsageResponse]:
        """Hourly usage buckets from ``starting_on`` to ``ending_before`` (datetimes or RFC 3339 strings)."""
        start, end = _rfc3339(starting_on, "starting_on"), _rfc3339(ending_before, "ending_before")
        return self._rest("get_billing_usage",
                          lambda r, o: r.get_billing_usage(starting_on=start, ending_before=end, **o),
                          raw_response, options)

    def get_current_checkpoint_storage_usage(
        self, project_id: str | None = None, *, raw_response: bool = False, **options: Any
    ) -> APIFuture[wt.CurrentCheckpointStorageUsageResponse]:
        """Checkpoint storage in use now, per project (one project with ``project_id``)."""
        return self._rest("get_current_checkpoint_storage_usage",
                          lambda r, o: r.get_current_checkpoint_storage_usage(project_id=project_id, **o),
                          raw_response, options)

    # -- training runs ---------------------------------------------------------------------------

    def get_training_run(self, training_run_id: str, access_scope: AccessScope = "owned", *,
                         raw_response: bool = False, **options: Any) -> APIFuture[wt.TrainingRun]:
        """One training run (``corrupted`` tells a poisoned run apart)."""
        return self._rest("get_training_run", lambda r, o: r.get_training_run(
            training_run_id=training_run_id, access_scope=access_scope, **o), raw_response, options)

    def get_training_run_by_tinker_path(self, tinker_path: str, access_scope: AccessScope = "owned", *,
                                        raw_response: bool = False, **options: Any) -> APIFuture[wt.TrainingRun]:
        """The training run a checkpoint path belongs to."""
        run_id = parse_tinker_path(tinker_path).training_run_id
        return self.get_training_run(run_id, access_scope, raw_response=raw_response, **options)

    def list_training_runs(self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned",
                           project_id: str | None = None, *, raw_response: bool = False,
                           **options: Any) -> APIFuture[wt.TrainingRunsResponse]:
        """A page of training runs; ``response.cursor`` says where the next page starts."""
        return self._rest("list_training_runs", lambda r, o: r.list_training_runs(
            limit=limit, offset=offset, access_scope=access_scope, project_id=project_id, **o),
            raw_response, options)

    async def iter_training_runs(self, page_size: int = 20, access_scope: AccessScope = "owned",
                                 **options: Any) -> AsyncIterator[wt.TrainingRun]:
        """Every training run, page by page, following the cursor."""
        offset = 0
        while True:
            page = await self.list_training_runs(page_size, offset, access_scope, **options)
            for run in page.training_runs:
                yield run
            offset += len(page.training_runs)
            if not page.training_runs or offset >= page.cursor.total_count:
                return

    def get_weights_info_by_tinker_path(self, tinker_path: str, *, raw_response: bool = False,
                                        **options: Any) -> APIFuture[wt.WeightsInfoResponse]:
        """Base model, LoRA rank and trained parts of a checkpoint."""
        parse_tinker_path(tinker_path)
        return self._rest("get_weights_info_by_tinker_path", lambda r, o: r.weights_info(
            wt.WeightsInfoRequest(tinker_path=tinker_path), **o), raw_response, options)

    # -- checkpoints -----------------------------------------------------------------------------

    def list_checkpoints(self, training_run_id: str, *, raw_response: bool = False,
                         **options: Any) -> APIFuture[wt.CheckpointsListResponse]:
        """A training run's checkpoints."""
        return self._rest("list_checkpoints", lambda r, o: r.list_checkpoints(
            training_run_id=training_run_id, **o), raw_response, options)

    def list_user_checkpoints(self, limit: int = 100, offset: int = 0, *, raw_response: bool = False,
                              **options: Any) -> APIFuture[wt.CheckpointsListResponse]:
        """A page of all your checkpoints, newest first."""
        return self._rest("list_user_checkpoints", lambda r, o: r.list_user_checkpoints(
            limit=limit, offset=offset, **o), raw_response, options)

    async def iter_user_checkpoints(self, page_size: int = 100, **options: Any) -> AsyncIterator[wt.Checkpoint]:
        """Every checkpoint you own, following the cursor."""
        offset = 0
        while True:
            page = await self.list_user_checkpoints(page_size, offset, **options)
            for ckpt in page.checkpoints:
                yield ckpt
            offset += len(page.checkpoints)
            total = page.cursor.total_count if page.cursor is not None else offset
            if not page.checkpoints or offset >= total:
                return

    def delete_checkpoint(self, training_run_id: str, checkpoint_id: str, *, raw_response: bool = False,
                          **options: Any) -> APIFuture[None]:
        """Delete one checkpoint (``checkpoint_id`` is ``weights/<name>`` or ``sampler_weights/<name>``)."""
        return self._rest("delete_checkpoint", lambda r, o: r.delete_checkpoint(
            training_run_id=training_run_id, checkpoint_id=checkpoint_id, **o), raw_response, options)

    def delete_checkpoint_from_tinker_path(self, tinker_path: str, *, raw_response: bool = False,
                                           **options: Any) -> APIFuture[None]:
        p = parse_tinker_path(tinker_path)
        return self.delete_checkpoint(p.training_run_id, p.checkpoint_id, raw_response=raw_response, **options)

    def publish_checkpoint_from_tinker_path(self, tinker_path: str, *, raw_response: bool = False,
                                            **options: Any) -> APIFuture[None]:
        """Make a checkpoint readable by others."""
        p = parse_tinker_path(tinker_path)
        return self._rest("publish_checkpoint_from_tinker_path", lambda r, o: r.publish_checkpoint(
            training_run_id=p.training_run_id, checkpoint_id=p.checkpoint_id, **o), raw_response, options)

    def unpublish_checkpoint_from_tinker_path(self, tinker_path: str, *, raw_response: bool = False,
                                              **options: Any) -> APIFuture[None]:
        p = parse_tinker_path(tinker_path)
        return self._rest("unpublish_checkpoint_from_tinker_path", lambda r, o: r.unpublish_checkpoint(
            training_run_id=p.training_run_id, checkpoint_id=p.checkpoint_id, **o), raw_response, options)

    def set_checkpoint_ttl_from_tinker_path(self, tinker_path: str, ttl_seconds: int | None, *,
                                            raw_response: bool = False, **options: Any) -> APIFuture[None]:
        """Expire a checkpoint ``ttl_seconds`` from now (None: never)."""
        p = parse_tinker_path(tinker_path)
        return self._rest("set_checkpoint_ttl_from_tinker_path", lambda r, o: r.set_checkpoint_ttl(
            wt.CheckpointTtlRequest(ttl_seconds=ttl_seconds),
            training_run_id=p.training_run_id, checkpoint_id=p.checkpoint_id, **o), raw_response, options)

    def get_checkpoint_archive_url(self, training_run_id: str, checkpoint_id: str, *,
                                   raw_response: bool = False, **options: Any) -> APIFuture[SignedURL]:
        """A signed URL to download the checkpoint as a tar, with ``expires_at``."""
        return self._rest("get_checkpoint_archive_url", lambda r, o: r.get_checkpoint_archive_url(
            training_run_id=training_run_id, checkpoint_id=checkpoint_id, **o), raw_response, options)

    def get_checkpoint_archive_url_from_tinker_path(self, tinker_path: str, *, raw_response: bool = False,
                                                    **options: Any) -> APIFuture[SignedURL]:
        p = parse_tinker_path(tinker_path)
        return self.get_checkpoint_archive_url(p.training_run_id, p.checkpoint_id,
                                               raw_response=raw_response, **options)

    def get_external_weights_urls(self, tinker_path: str, *, raw_response: bool = False,
                                  **options: Any) -> APIFuture[wt.ExternalWeightsUrlsResponse]:
        p = parse_tinker_path(tinker_path)
        return self._rest("get_external_weights_urls", lambda r, o: r.get_external_weights_urls(
            training_run_id=p.training_run_id, checkpoint_id=p.checkpoint_id, **o), raw_response, options)

    # -- sessions and samplers --------------------------------------------------------------------

    def get_session(self, session_id: str, access_scope: AccessScope = "owned", *, raw_response: bool = False,
                    **options: Any) -> APIFuture[wt.GetSessionResponse]:
        """The training runs and samplers a session created."""
        return self._rest("get_session", lambda r, o: r.get_session(
            session_id=session_id, access_scope=access_scope, **o), raw_response, options)

    def list_sessions(self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned", *,
                      raw_response: bool = False, **options: Any) -> APIFuture[wt.ListSessionsResponse]:
        return self._rest("list_sessions", lambda r, o: r.list_sessions(
            limit=limit, offset=offset, access_scope=access_scope, **o), raw_response, options)

    def get_sampler(self, sampler_id: str, *, raw_response: bool = False,
                    **options: Any) -> APIFuture[wt.GetSamplerResponse]:
        """A sampler's base model and weights path."""
        return self._rest("get_sampler", lambda r, o: r.get_sampler(sampler_id=sampler_id, **o),
                          raw_response, options)

    def assign_session_project(self, session_id: str, project_id: str, *, raw_response: bool = False,
                               **options: Any) -> APIFuture[None]:
        return self._rest("assign_session_project", lambda r, o: r.set_session_project(
            wt.SetSessionProjectRequest(project_id=project_id), session_id=session_id, **o), raw_response, options)

    def search_sessions(self, request: wt.SessionSearchRequest | None = None, *, raw_response: bool = False,
                        **options: Any) -> APIFuture[wt.SessionSearchResponse]:
        """One page of your organisation's sessions, newest first (experimental in the SDK).

        Page on by passing ``response.next_cursor`` as the next request's ``cursor``.
        """
        req = request if request is not None else wt.SessionSearchRequest()
        return self._rest("search_sessions", lambda r, o: r.search_sessions(req, **o), raw_response, options)

    async def iter_sessions(self, request: wt.SessionSearchRequest | None = None,
                            **options: Any) -> AsyncIterator[wt.SessionSummary]:
        """Every session :meth:`search_sessions` finds, following ``next_cursor``."""
        req = request if request is not None else wt.SessionSearchRequest()
        while True:
            page = await self.search_sessions(req, **options)
            for session in page.sessions:
                yield session
            if page.next_cursor is None or not page.sessions:
                return
            req = msgspec.structs.replace(req, cursor=page.next_cursor)

    def export_session_trace(self, session_id: str, *, poll_interval: float = TRACE_EXPORT_POLL_S,
                             raw_response: bool = False, **options: Any) -> APIFuture[str]:
        """A signed URL of the session's Perfetto trace (``.pftrace``), once the server built it.

        The export job is started (or reused) by the first GET of
        ``sessions/{id}/trace_export``; it is polled every ``poll_interval``
        seconds until ``ready`` (the URL) or ``failed`` (RequestFailedError).
        """
        opts = take_options("export_session_trace", options)
        rest = self._ctx.api.rest

        async def run(fut: APIFuture[Any]) -> Any:
            if raw_response:
                return await rest.with_raw_response.session_trace_export(session_id=session_id, **opts)
            while True:
                answer = await rest.session_trace_export(session_id=session_id, **opts)
                if answer.status == "ready":
                    if not answer.url:
                        raise RequestFailedError("trace export is ready but has no URL", category="server")
                    return answer.url
                if answer.status == "failed":
                    raise RequestFailedError(f"trace export failed: {answer.error or 'no reason given'}",
                                             category="server")
                fut.set_state("running")
                await trio.sleep(poll_interval)

        return self._ctx.start("export_session_trace", run)

    def whoami(self) -> APIFuture[wt.WhoamiResponse]:
        """Who the credential is: user URN, organisation URN, email (if user-backed).

        Read from the claims of the credential itself when it is a JWT, so no
        request is made (as in the SDK). A plain ``tml-`` API key carries no
        identity: the future fails with ConfigError saying so.
        """
        key = getattr(getattr(self._ctx.service, "config", None), "api_key", None)
        try:
            answer = whoami_from_credential(key)
        except ConfigError as exc:
            return APIFuture.failed(exc, name="whoami")
        return APIFuture.completed(answer, name="whoami")

    def copy_weights(self, path: str, destination_project_id: str | None = None, *,
                     ttl_seconds: int | None = None, weights_access_token: str | None = None,
                     raw_response: bool = False, **options: Any) -> APIFuture[str]:
        """Copy a checkpoint into ``destination_project_id`` (default: TINKER_PROJECT_ID); the copy's path."""
        parse_tinker_path(path)
        project = destination_project_id or os.environ.get("TINKER_PROJECT_ID") or None
        if project is None:
            raise ValueError("pass destination_project_id or set TINKER_PROJECT_ID")
        request = wt.CopyWeightsRequest(source_path=path, destination_project_id=project, ttl_seconds=ttl_seconds,
                                        weights_access_token=weights_access_token)

        async def call(r: Any, o: dict[str, Any]) -> Any:
            answer = await r.copy_weights(request, **o)
            return answer if raw_response else answer.tinker_path

        return self._rest("copy_weights", call, raw_response, options)

    def get_server_capabilities(self, *, raw_response: bool = False,
                                **options: Any) -> APIFuture[wt.GetServerCapabilitiesResponse]:
        opts = take_options("get_server_capabilities", options)
        svc = self._ctx.api.service

        async def run(fut: APIFuture[Any]) -> Any:
            return await (svc.with_raw_response if raw_response else svc).get_server_capabilities(**opts)

        return self._ctx.start("get_server_capabilities", run)
