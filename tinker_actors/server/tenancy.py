"""Optional isolation between API keys: ``serve --api-keys FILE``.

With two or more keys, each key is a *tenant*: it sees only the sessions it
created and what hangs off them (training runs, samplers, checkpoints,
futures, idempotency keys); anything else answers 404, exactly as an id that
does not exist. With one key, or with any ``tml-`` key (the default), there is
one tenant and today's behaviour.

A tenant is named by a digest of its key (:func:`tenant_of`), never the key:
the digest is what records carry on disk, so a restart with the same keys
file keeps every key's view. The request's tenant travels in a context
variable set by the gate for the request's task (:data:`current`).
"""

from __future__ import annotations

import hashlib
import hmac
from contextvars import ContextVar
from pathlib import Path

__all__ = ["current", "tenant_of", "visible", "load_keys", "KeysFileError", "KeyRing"]

# the tenant of the request being handled; None: no isolation
current: ContextVar[str | None] = ContextVar("tinker_actors_server_tenant", default=None)


def tenant_of(key: str) -> str:
    return "t-" + hashlib.sha256(b"tinker-actors tenant\0" + key.encode()).hexdigest()[:20]


def visible(owner: str | None) -> bool:
    """May the current request see a record owned by ``owner``?"""
    tenant = current.get()
    return tenant is None or owner == tenant


class KeysFileError(ValueError):
    """A keys file that cannot be used; the message never quotes a key."""


def load_keys(path: Path | str) -> list[str]:
    """Keys from ``path``: one per line; blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"cannot read API keys file {str(path)!r}: {type(exc).__name__}") from None
    keys: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        if not key.isprintable() or any(c.isspace() for c in key) or not key.isascii():
            raise KeysFileError(f"{path}: line {number} is not a usable key (printable ASCII without spaces)")
        keys.append(key)
    if not keys:
        raise KeysFileError(f"{path}: no keys (one per line)")
    if len(set(keys)) != len(keys):
        raise KeysFileError(f"{path}: a key appears twice")
    return keys


class KeyRing:
    """The accepted keys and their tenants; lookups compare in constant time."""

    def __init__(self, keys: list[str]):
        self._keys = [(k.encode(), tenant_of(k)) for k in keys]
        self.isolated = len(keys) > 1

    def tenant(self, key: str | None) -> str | None | bool:
        """The key's tenant (None when not isolated); False when the key is not accepted."""
        if not key:
            return False
        given = key.encode("utf-8", "replace")
        found: str | None | bool = False
        for expected, tenant in self._keys:  # every key is compared: no early exit
            if hmac.compare_digest(given, expected):
                found = tenant if self.isolated else None
        return found

    def __repr__(self) -> str:
        return f"KeyRing({len(self._keys)} keys)"
