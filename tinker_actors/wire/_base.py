"""Base classes shared by every wire Struct.

The official SDK serialises bodies with ``model_dump(mode="json",
exclude_none=True)``: a field that is None is left out, but a field that holds
its non-None default (``temperature=1``, ``overwrite=false``, ...) is sent.
msgspec's ``omit_defaults`` only leaves out a value that *is* the default
object, so:

* a field whose SDK default is None is declared ``x: T | None = None`` and is
  omitted when None (``omit_defaults=True`` on the base);
* a field whose SDK default is not None is declared ``x: T = sent(value)``: a
  ``default_factory`` that builds a fresh value, which msgspec never treats
  as "the default", so the field is always encoded, exactly like the SDK.

Request ``type`` literals are msgspec tags (``tag_field="type"``): they are
always encoded, checked when present on decode, and optional when a Struct is
decoded on its own (as the SDK's defaults are). A ``type`` property mirrors the
SDK attribute.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["WireStruct", "sent"]


class WireStruct(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """Base of every wire body: keyword-only, None fields omitted, immutable."""

    @property
    def type(self) -> str | None:
        """The ``type`` tag this Struct is encoded with (None when untagged)."""
        tag = type(self).__struct_config__.tag
        return tag if isinstance(tag, str) else None


def sent(value: Any) -> Any:
    """A default that is always encoded (see the module docstring)."""
    if isinstance(value, (list, dict)):
        empty = type(value)
        return msgspec.field(default_factory=lambda: empty(value))
    return msgspec.field(default_factory=lambda: value)
