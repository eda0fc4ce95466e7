"""Admin endpoints (audit log, billing usage, checkpoint storage usage) on the local server.

The drop-in's RestClient and AdminClient answer with what the server knows;
the official SDK's AdminClient reads the same answers (wire compatibility).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import tinker_actors.sdk as tinker

pytestmark = pytest.mark.sdk


def _train_and_save(service: tinker.ServiceClient) -> tuple[str, str]:
    training = service.create_lora_training_client(base_model="tinker-actors/byte-lm-tiny", rank=4).result()
    tokens = list(b"admin endpoints")
    datum = tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                         loss_fn_inputs={"target_tokens": tokens[1:], "weights": np.ones(len(tokens) - 1)})
    training.forward_backward([datum], "cross_entropy").result()
    return training.model_id, training.save_state("adm").result().path


def test_audit_billing_and_storage_usage_describe_the_saved_checkpoint(sdk_env: str) -> None:
    with tinker.ServiceClient(base_url=sdk_env, project_id="proj-a") as service:
        run_id, path = _train_and_save(service)
        with tinker.AdminClient(base_url=sdk_env) as admin:
            audit = admin.get_audit_log("checkpoints").result()
            mine = [e for e in audit.entries if e.tinker_path == path]
            assert len(mine) == 1 and mine[0].event == "checkpoint.created" and mine[0].model_id == run_id
            assert admin.get_audit_log("teams").result().entries == []

            now = datetime.now(timezone.utc)
            usage = admin.get_billing_usage(now - timedelta(hours=1), (now + timedelta(hours=1)).isoformat()).result()
            saves = [e for e in usage.data if e.event_info.type == "checkpoint" and e.session_id == service.holder.service.session_id]
            assert sum(e.event_info.count for e in saves) == 1
            assert saves[0].base_model == "tinker-actors/byte-lm-tiny"

            storage = admin.get_current_checkpoint_storage_usage(project_id="proj-a").result()
            assert [(d.project_id, d.checkpoint_count) for d in storage.data] == [("proj-a", 1)]
            assert storage.data[0].size_bytes > 0

        rest = service.create_rest_client()
        with pytest.raises(tinker.BadRequestError):
            rest.get_billing_usage(now, now - timedelta(hours=1)).result()


def test_the_official_sdk_reads_the_same_answers(sdk_env: str) -> None:
    import tinker as official

    admin = official.AdminClient(base_url=sdk_env)
    assert isinstance(admin.get_audit_log().result(), official.types.AuditLogResponse)
    storage = admin.get_current_checkpoint_storage_usage().result()
    assert all(item.checkpoint_count >= 0 for item in storage.data)
    now = datetime.now(timezone.utc)
    assert admin.get_billing_usage(now - timedelta(hours=2), now).result().data is not None
