"""``tinker.RestClient`` and ``tinker.AdminClient`` of the drop-in.

Both can be made on their own (``tinker.RestClient(base_url=..., api_key=...)``
opens a runtime of its own, closed with :meth:`RestClient.close` or at
interpreter exit) or from a ServiceClient (sharing its runtime). Every
method returns an :class:`~tinker_actors.sdk.api_future.APIFuture`; each
``*_async`` awaits it.
"""

from __future__ import annotations

import atexit
from datetime import date, datetime
from typing import Any, Literal


from . import types
from ._runtime import Runtime
from .api_future import APIFuture

__all__ = ["RestClient", "AdminClient"]

AccessScope = Literal["owned", "accessible"]
AuditEventType = Literal["all", "checkpoints", "projects", "teams", "organizations"]


def _none(_: Any) -> None:
    return None


class _RuntimeUser:
    """A client on a runtime it may own (made standalone) or share (made from a ServiceClient)."""

    def __init__(self, _holder: Any = None, *, base_url: str | None = None, api_key: str | None = None) -> None:
        if isinstance(_holder, Runtime):
            self._rt = _holder
            self._owns_runtime = False
        else:
            self._rt = Runtime(base_url=base_url, api_key=api_key)
            self._owns_runtime = True
            atexit.register(self._rt.close)
        self._inner = self._rt.call(self._rt.service.create_rest_client)

    def close(self) -> None:
        """Close the runtime this client opened itself (a client from a ServiceClient shares its runtime)."""
        if self._owns_runtime:
            self._rt.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_telemetry(self) -> Any:
        return self._rt._sync.get_telemetry()

    # -- admin endpoints, shared by RestClient and AdminClient ---------------------------------

    def get_audit_log(self, event_type: AuditEventType = "all",
                      day: date | None = None) -> APIFuture[types.AuditLogResponse]:
        """Audit events of one UTC day (today by default) of the given type."""
        return self._rt.op(lambda: self._inner.get_audit_log(event_type, day))

    async def get_audit_log_async(self, event_type: AuditEventType = "all",
                                  day: date | None = None) -> types.AuditLogResponse:
        return await self.get_audit_log(event_type, day)

    def get_billing_usage(self, starting_on: datetime | str,
                          ending_before: datetime | str) -> APIFuture[types.BillingUsageResponse]:
        """Hourly usage buckets between the two instants (datetimes or RFC 3339 strings)."""
        return self._rt.op(lambda: self._inner.get_billing_usage(starting_on, ending_before))

    async def get_billing_usage_async(self, starting_on: datetime | str,
                                      ending_before: datetime | str) -> types.BillingUsageResponse:
        return await self.get_billing_usage(starting_on, ending_before)

    def get_current_checkpoint_storage_usage(
        self, project_id: str | None = None
    ) -> APIFuture[types.CurrentCheckpointStorageUsageResponse]:
        """Checkpoint storage in use now, per project and user."""
        return self._rt.op(lambda: self._inner.get_current_checkpoint_storage_usage(project_id))

    async def get_current_checkpoint_storage_usage_async(
        self, project_id: str | None = None
    ) -> types.CurrentCheckpointStorageUsageResponse:
        return await self.get_current_checkpoint_storage_usage(project_id)


class RestClient(_RuntimeUser):
    """Training runs, checkpoints, sessions and samplers (the SDK's REST surface)."""

    def get_training_run(self, training_run_id: types.ModelID,
                         access_scope: AccessScope = "owned") -> APIFuture[types.TrainingRun]:
        return self._rt.op(lambda: self._inner.get_training_run(training_run_id, access_scope))

    async def get_training_run_async(self, training_run_id: types.ModelID,
                                     access_scope: AccessScope = "owned") -> types.TrainingRun:
        return await self.get_training_run(training_run_id, access_scope)

    def get_training_run_by_tinker_path(self, tinker_path: str,
                                        access_scope: AccessScope = "owned") -> APIFuture[types.TrainingRun]:
        return self._rt.op(lambda: self._inner.get_training_run_by_tinker_path(tinker_path, access_scope))

    async def get_training_run_by_tinker_path_async(self, tinker_path: str,
                                                    access_scope: AccessScope = "owned") -> types.TrainingRun:
        return await self.get_training_run_by_tinker_path(tinker_path, access_scope)

    def get_weights_info_by_tinker_path(self, tinker_path: str) -> APIFuture[types.WeightsInfoResponse]:
        return self._rt.op(lambda: self._inner.get_weights_info_by_tinker_path(tinker_path))

    def list_training_runs(self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned",
                           project_id: str | None = None) -> APIFuture[types.TrainingRunsResponse]:
        kwargs = {} if project_id is None else {"extra_query": {"project_id": project_id}}
        return self._rt.op(lambda: self._inner.list_training_runs(limit, offset, access_scope, **kwargs))

    async def list_training_runs_async(self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned",
                                       project_id: str | None = None) -> types.TrainingRunsResponse:
        return await self.list_training_runs(limit, offset, access_scope, project_id)

    def list_checkpoints(self, training_run_id: types.ModelID) -> APIFuture[types.CheckpointsListResponse]:
        return self._rt.op(lambda: self._inner.list_checkpoints(training_run_id))

    async def list_checkpoints_async(self, training_run_id: types.ModelID) -> types.CheckpointsListResponse:
        return await self.list_checkpoints(training_run_id)

    def list_user_checkpoints(self, limit: int = 100, offset: int = 0) -> APIFuture[types.CheckpointsListResponse]:
        return self._rt.op(lambda: self._inner.list_user_checkpoints(limit, offset))

    async def list_user_checkpoints_async(self, limit: int = 100, offset: int = 0) -> types.CheckpointsListResponse:
        return await self.list_user_checkpoints(limit, offset)

    def delete_checkpoint(self, training_run_id: types.ModelID, checkpoint_id: str) -> APIFuture[None]:
        return self._rt.op(lambda: self._inner.delete_checkpoint(training_run_id, checkpoint_id), _none)

    async def delete_checkpoint_async(self, training_run_id: types.ModelID, checkpoint_id: str) -> None:
        return await self.delete_checkpoint(training_run_id, checkpoint_id)

    def delete_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        return self._rt.op(lambda: self._inner.delete_checkpoint_from_tinker_path(tinker_path), _none)

    async def delete_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        return await self.delete_checkpoint_from_tinker_path(tinker_path)

    def publish_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        return self._rt.op(lambda: self._inner.publish_checkpoint_from_tinker_path(tinker_path), _none)

    async def publish_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        return await self.publish_checkpoint_from_tinker_path(tinker_path)

    def unpublish_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        return self._rt.op(lambda: self._inner.unpublish_checkpoint_from_tinker_path(tinker_path), _none)

    async def unpublish_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        return await self.unpublish_checkpoint_from_tinker_path(tinker_path)

    def set_checkpoint_ttl_from_tinker_path(self, tinker_path: str, ttl_seconds: int | None) -> APIFuture[None]:
        return self._rt.op(lambda: self._inner.set_checkpoint_ttl_from_tinker_path(tinker_path, ttl_seconds), _none)

    async def set_checkpoint_ttl_from_tinker_path_async(self, tinker_path: str, ttl_seconds: int | None) -> None:
        return await self.set_checkpoint_ttl_from_tinker_path(tinker_path, ttl_seconds)

    def get_external_weights_urls(self, tinker_path: str) -> APIFuture[types.ExternalWeightsUrlsResponse]:
        return self._rt.op(lambda: self._inner.get_external_weights_urls(tinker_path))

    async def get_external_weights_urls_async(self, tinker_path: str) -> types.ExternalWeightsUrlsResponse:
        return await self.get_external_weights_urls(tinker_path)

    def get_session(self, session_id: str, access_scope: AccessScope = "owned") -> APIFuture[types.GetSessionResponse]:
        return self._rt.op(lambda: self._inner.get_session(session_id, access_scope))

    async def get_session_async(self, session_id: str,
                                access_scope: AccessScope = "owned") -> types.GetSessionResponse:
        return await self.get_session(session_id, access_scope)

    def list_sessions(self, limit: int = 20, offset: int = 0,
                      access_scope: AccessScope = "owned") -> APIFuture[types.ListSessionsResponse]:
        return self._rt.op(lambda: self._inner.list_sessions(limit, offset, access_scope))

    async def list_sessions_async(self, limit: int = 20, offset: int = 0,
                                  access_scope: AccessScope = "owned") -> types.ListSessionsResponse:
        return await self.list_sessions(limit, offset, access_scope)

    def get_sampler(self, sampler_id: str) -> APIFuture[types.GetSamplerResponse]:
        return self._rt.op(lambda: self._inner.get_sampler(sampler_id))

    async def get_sampler_async(self, sampler_id: str) -> types.GetSamplerResponse:
        return await self.get_sampler(sampler_id)

    def assign_session_project(self, session_id: str, project_id: str) -> APIFuture[None]:
        return self._rt.op(lambda: self._inner.assign_session_project(session_id, project_id), _none)

    async def assign_session_project_async(self, session_id: str, project_id: str) -> None:
        return await self.assign_session_project(session_id, project_id)

    def search_sessions(self, request: types.SessionSearchRequest) -> APIFuture[types.SessionSearchResponse]:
        return self._rt.op(lambda: self._inner.search_sessions(request))

    def export_session_trace(self, session_id: str) -> APIFuture[str]:
        return self._rt.op(lambda: self._inner.export_session_trace(session_id))

    async def export_session_trace_async(self, session_id: str) -> str:
        return await self.export_session_trace(session_id)

    def whoami(self) -> APIFuture[types.WhoamiResponse]:
        return self._rt.op(lambda: self._inner.whoami())

    def copy_weights(self, path: str, destination_project_id: str | None = None, *, ttl_seconds: int | None = None,
                     weights_access_token: str | None = None) -> APIFuture[str]:
        return self._rt.op(lambda: self._inner.copy_weights(
            path, destination_project_id, ttl_seconds=ttl_seconds, weights_access_token=weights_access_token))

    async def copy_weights_async(self, path: str, destination_project_id: str | None = None, *,
                                 ttl_seconds: int | None = None, weights_access_token: str | None = None) -> str:
        return await self.copy_weights(path, destination_project_id, ttl_seconds=ttl_seconds,
                                       weights_access_token=weights_access_token)

    def get_server_capabilities(self) -> APIFuture[types.GetServerCapabilitiesResponse]:
        return self._rt.op(lambda: self._inner.get_server_capabilities())


class AdminClient(_RuntimeUser):
    """The organisation's audit log, billing usage and checkpoint storage usage."""



