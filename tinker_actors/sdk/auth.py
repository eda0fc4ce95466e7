"""``tinker.auth`` of the drop-in: is a credential configured, and does the server accept it."""

from __future__ import annotations

import os

from ._exceptions import TinkerError

__all__ = ["get_tinker_token", "tinker_has_credentials", "raise_if_tinker_not_accessible"]


def get_tinker_token() -> str | None:
    """The API key from ``TINKER_API_KEY``, or None (nothing is sent anywhere)."""
    return os.environ.get("TINKER_API_KEY") or None


def tinker_has_credentials() -> bool:
    return get_tinker_token() is not None


def raise_if_tinker_not_accessible() -> None:
    """Raise a TinkerError unless the configured server answers with the configured credential."""
    from .rest_client import RestClient

    if not tinker_has_credentials():
        raise TinkerError("no Tinker credential: set TINKER_API_KEY")
    try:
        with RestClient() as rest:
            rest.get_server_capabilities().result()
    except TinkerError:
        raise
    except Exception as exc:
        raise TinkerError(str(exc)) from exc
