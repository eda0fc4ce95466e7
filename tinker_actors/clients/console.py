"""Links into the Tinker console for a session, a training run or a checkpoint.

The console lives at ``$TINKER_CONSOLE_URL`` when set (a self-hosted or
staging console), else at the official service's console. A local server
has no console of its own; its links still name the right objects.
"""

from __future__ import annotations

import os
from urllib.parse import quote

__all__ = ["console_base_url", "session_console_url", "training_run_console_url", "checkpoint_console_url"]

OFFICIAL_CONSOLE = "https://tinker.thinkingmachines.ai"


def console_base_url() -> str:
    return (os.environ.get("TINKER_CONSOLE_URL") or OFFICIAL_CONSOLE).rstrip("/")


def session_console_url(session_id: str | None) -> str:
    """The session's page (the sessions list when there is no session yet)."""
    base = console_base_url()
    return f"{base}/sessions/{quote(session_id, safe='')}" if session_id else f"{base}/sessions"


def training_run_console_url(training_run_id: str) -> str:
    return f"{console_base_url()}/training_runs/{quote(training_run_id, safe='')}"


def checkpoint_console_url(training_run_id: str, checkpoint_id: str) -> str:
    return f"{console_base_url()}/checkpoints/{quote(training_run_id, safe='')}/{quote(checkpoint_id, safe='')}"
