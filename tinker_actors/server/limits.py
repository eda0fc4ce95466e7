"""What one request may ask of the local server, checked before anything is built.

Two layers, both answering 400 (413 for sizes) with a message that names the
field:

* :class:`Limits` holds every number (documented in docs/reliability.md,
  "Server limits"); ``ServerConfig.limits`` carries one.
* :func:`check_body` walks a decoded wire Struct against the generic limits:
  every string, every list of strings or objects, every integer outside a
  numeric array, the nesting of free-form values (``user_metadata``). The walk
  is compiled once per Struct type from ``msgspec.inspect``, so a field that
  cannot break a limit (a float, a bool, a list of numbers) costs nothing.
  Lists of numbers (tokens, tensor data) are bounded by the body size here and
  by the model limits in ``engine`` (context length, vocabulary, int32).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import msgspec
import msgspec.inspect as mi

__all__ = ["Limits", "LimitError", "check_body", "check_value", "clip"]

MiB = 1024 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Maxima per request. Past each, the request gets a 4xx before any work."""

    # bodies (the raw limit is ServerConfig.max_body_bytes)
    max_json_body_bytes: int = 16 * MiB  # a JSON body decodes to ~8x its size in objects
    max_inflated_bytes: int | None = None  # decompressed body; None = max_body_bytes
    body_idle_timeout_s: float = 15.0  # no body bytes for this long: 408
    body_timeout_s: float = 120.0  # the whole body must arrive within this
    # a connection with no request in flight (between requests, or still
    # sending its headers) is closed after this long. Above the client's own
    # keep-alive expiry (30 s), so a pooled connection never races the close.
    connection_idle_timeout_s: float = 75.0
    # generic shape of decoded bodies
    max_json_depth: int = 32  # nesting of free-form values (user_metadata)
    max_string_chars: int = 64 * 1024
    max_list_items: int = 10_000  # lists and dicts of strings or objects
    max_idempotency_key_chars: int = 255
    # sampling
    max_num_samples: int = 1024
    max_topk_logprobs: int = 64  # topk_prompt_logprobs, topk_sample_logprobs
    max_stop_sequences: int = 16
    # num_samples x (prompt + max_tokens): the decode cache and result size
    max_sample_tokens: int = 1 << 18
    # training
    max_datums: int = 4096
    max_forward_tokens: int = 1 << 20  # summed over the datums of one request
    max_seq_ahead: int = 100_000  # a seq_id this far past the model's next: 400 at once
    # REST
    max_ttl_seconds: int = 10 * 365 * 24 * 3600

    def inflated_cap(self, max_body_bytes: int) -> int:
        return self.max_inflated_bytes if self.max_inflated_bytes is not None else max_body_bytes


class LimitError(ValueError):
    """A request over a limit; ``field`` is its JSON path (``$.a.b[3]``)."""

    def __init__(self, message: str, field: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def clip(value: Any, n: int = 64) -> str:
    """``repr(value)`` cut to ``n`` characters, for error messages that echo input."""
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


# -- the compiled walk --------------------------------------------------------
Check = Callable[[Any, str, Limits, int], None]


def check_body(body: Any, limits: Limits) -> None:
    """Raise :class:`LimitError` when a decoded body breaks a generic limit."""
    check = _checker(type(body))
    if check is not None:
        check(body, "$", limits, 0)


def check_value(value: Any, field: str, limits: Limits, depth: int = 0) -> None:
    """The walk for a free-form (``Any``) value: depth, strings, list sizes, ints."""
    if depth > limits.max_json_depth:
        raise LimitError(f"nests deeper than {limits.max_json_depth} levels", field)
    if isinstance(value, str):
        _check_str(value, field, limits)
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        return
    elif isinstance(value, int):
        _check_int(value, field)
    elif isinstance(value, dict):
        _check_len(value, field, limits)
        for k, v in value.items():
            _check_str(k, field, limits)
            check_value(v, f"{field}.{k}", limits, depth + 1)
    elif isinstance(value, (list, tuple)):
        _check_len(value, field, limits)
        for i, v in enumerate(value):
            check_value(v, f"{field}[{i}]", limits, depth + 1)


def _check_str(value: str, field: str, limits: Limits) -> None:
    if len(value) > limits.max_string_chars:
        raise LimitError(f"a string of {len(value)} characters; the limit is {limits.max_string_chars}", field)


def _check_len(value: Any, field: str, limits: Limits) -> None:
    if len(value) > limits.max_list_items:
        raise LimitError(f"has {len(value)} items; the limit is {limits.max_list_items}", field)


def _check_int(value: int, field: str) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise LimitError(f"integer {clip(value)} is outside the 64-bit range", field)


@functools.cache
def _checker(cls: type) -> Check | None:
    return _compile(mi.type_info(cls), set())


def _compile(t: mi.Type, seen: set[type]) -> Check | None:
    """A check for values of type ``t``; None when no value of ``t`` can break a limit."""
    if isinstance(t, mi.StrType):
        return lambda v, f, lim, d: _check_str(v, f, lim) if isinstance(v, str) else None
    if isinstance(t, mi.IntType):
        return lambda v, f, lim, d: _check_int(v, f) if isinstance(v, int) else None
    if isinstance(t, mi.AnyType):
        return check_value
    if isinstance(t, mi.UnionType):
        parts = [c for c in (_compile(x, seen) for x in t.types) if c is not None]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]

        def union(v: Any, f: str, lim: Limits, d: int) -> None:
            for part in parts:
                part(v, f, lim, d)

        return union
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        item = t.item_type
        if _numeric(item):
            return None  # arrays of numbers: bounded by the model limits in engine
        inner = _compile(item, seen)

        def seq(v: Any, f: str, lim: Limits, d: int) -> None:
            if not isinstance(v, (list, tuple, set, frozenset)):
                return
            _check_len(v, f, lim)
            if inner is not None:
                for i, x in enumerate(v):
                    inner(x, f"{f}[{i}]", lim, d + 1)

        return seq
    if isinstance(t, mi.DictType):
        value = _compile(t.value_type, seen)

        def mapping(v: Any, f: str, lim: Limits, d: int) -> None:
            if not isinstance(v, dict):
                return
            if d > lim.max_json_depth:
                raise LimitError(f"nests deeper than {lim.max_json_depth} levels", f)
            _check_len(v, f, lim)
            for k, x in v.items():
                if isinstance(k, str):
                    _check_str(k, f, lim)
                if value is not None:
                    value(x, f"{f}.{k}", lim, d + 1)

        return mapping
    if isinstance(t, mi.StructType):
        if t.cls in seen:  # a recursive Struct: check it when we get there
            return lambda v, f, lim, d: _checker(type(v))(v, f, lim, d) if isinstance(v, msgspec.Struct) else None  # type: ignore[misc]
        seen = seen | {t.cls}
        fields = [(fld.name, c) for fld in t.fields if (c := _compile(fld.type, seen)) is not None]
        if not fields:
            return None

        def struct(v: Any, f: str, lim: Limits, d: int) -> None:
            if not isinstance(v, msgspec.Struct):
                return
            for name, check in fields:
                x = getattr(v, name, None)
                if x is not None:
                    check(x, f"{f}.{name}", lim, d + 1)

        return struct
    return None  # bool, float, bytes (bounded by the body), literals, ...


def _numeric(t: mi.Type) -> bool:
    if isinstance(t, (mi.IntType, mi.FloatType, mi.BoolType)):
        return True
    if isinstance(t, mi.UnionType):
        return all(_numeric(x) or isinstance(x, mi.NoneType) for x in t.types)
    return False
