"""``tinker.lib`` of the drop-in: only ``public_interfaces`` is public."""

from __future__ import annotations

from . import public_interfaces

__all__ = ["public_interfaces"]
