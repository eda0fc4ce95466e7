"""The library's loggers: structlog events delivered through the standard ``logging`` machinery.

``get_logger(__name__)`` gives a structlog logger (``log.info("event", key=value)``)
bound to ``logging.getLogger("tinker_actors....")``, so an application routes,
levels or silences the library's logs the way it does for httpx::

    logging.getLogger("tinker_actors").setLevel(logging.WARNING)

The library never calls ``structlog.configure`` (that global belongs to the
application) and never writes to stdout/stderr itself: the ``tinker_actors``
logger carries a ``NullHandler`` so that, with no logging configured at all,
even warnings stay silent (Python's last-resort handler would print them).

Which processors an event runs through is decided when it is logged:

* the application configured structlog (``structlog.is_configured()``, which
  includes ``structlog.testing.capture_logs``): its processors, so library
  events join its own (the stdlib recipe ending in
  ``ProcessorFormatter.wrap_for_formatter`` renders them like any other);
* otherwise: drop the event early when the stdlib logger would, then hand
  ``logging`` a plain ``"event key=value ..."`` message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import structlog

__all__ = ["get_logger", "render_message"]

ROOT = "tinker_actors"
logging.getLogger(ROOT).addHandler(logging.NullHandler())


def render_message(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The last processor when nobody configured structlog: one readable line for ``logging``."""
    ed = dict(event_dict)
    event = ed.pop("event", "")
    exc_info = ed.pop("exc_info", None)
    stack_info = ed.pop("stack_info", False)
    parts = [str(event)] + [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in ed.items()]
    # '%' in values must not be read as a format string by logging.
    kwargs: dict[str, Any] = {"stack_info": bool(stack_info)}
    if exc_info:
        kwargs["exc_info"] = exc_info
    return ("%s", " ".join(parts)), kwargs


_DEFAULT_PROCESSORS: tuple[Any, ...] = (
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    render_message,
)


class _Processors:
    """The processor chain, looked up at each event (see the module docstring)."""

    def __iter__(self) -> Iterator[Any]:
        if structlog.is_configured():
            return iter(structlog.get_config()["processors"])
        return iter(_DEFAULT_PROCESSORS)


_PROCESSORS = _Processors()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger for module ``name`` (pass ``__name__``), on ``logging.getLogger(name)``."""
    if name != ROOT and not name.startswith(ROOT + "."):
        name = f"{ROOT}.{name}"
    return structlog.stdlib.BoundLogger(logging.getLogger(name), _PROCESSORS, {})  # type: ignore[arg-type]
