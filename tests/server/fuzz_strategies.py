"""Hypothesis strategies for hostile request bodies, built from the wire Structs.

``struct_docs(T, known)`` generates JSON documents shaped like the wire Struct
``T`` (``msgspec.inspect`` walks its fields): required fields always,
optional ones sometimes, ids drawn from ``known`` (real ids on the server
under test, so requests reach deep code) or made up, integers and floats from
small values and extremes. ``hostile_body(doc)`` then sends the document as
is or mutated: a field replaced by a value of the wrong type, a huge number,
a long string or a deep nest; the document truncated, replaced by random
bytes or by JSON of the wrong kind; and compressed (gzip, deflate, zstd),
corrupted after compression, or labelled with an encoding it does not have.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from typing import Any

import msgspec
import msgspec.inspect as mi
import zstandard
from hypothesis import strategies as st

Known = dict[str, list[str]]

EXTREME_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30]
EXTREME_FLOATS = [0.0, -0.0, 1e-320, 1e308, -1e308, 0.5, 3.0]
# ids whose value matters: drawn from the real ones most of the time
ID_FIELDS = {
    "session_id", "model_id", "sampling_session_id", "request_id", "path", "tinker_path", "source_path",
    "model_path", "base_model", "last_session_id",
}
HOSTILE_STRINGS = [
    "", " ", "..", "../../etc/passwd", "/etc/passwd", "tinker://../../x/weights/y", "tinker://run/weights/..",
    "tinker://r/weights/a\x00b", "\x00", "\ud7ff\ue000", "é" * 40, "%2e%2e%2f", "C:\\windows", "a" * 300,
]


def _ints() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-2, 40), st.integers(-(2**70), 2**70), st.sampled_from(EXTREME_INTS))


def _floats() -> st.SearchStrategy[float]:
    return st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(EXTREME_FLOATS))


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), _ints(), _floats(), st.text(max_size=12))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
        max_leaves=max_leaves,
    )


def _strings(name: str, known: Known) -> st.SearchStrategy[str]:
    made_up = st.one_of(st.text(max_size=24), st.sampled_from(HOSTILE_STRINGS))
    real = known.get(name)
    if name in ID_FIELDS and real:
        return st.one_of(st.sampled_from(real), st.sampled_from(real), made_up)
    return made_up


def from_type(t: mi.Type, known: Known, name: str = "", *, tag_required: bool = False) -> st.SearchStrategy[Any]:
    """JSON-able values of wire type ``t`` (``name``: the field, for id hints)."""
    if isinstance(t, mi.StructType):
        required: dict[str, st.SearchStrategy[Any]] = {}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        for f in t.fields:
            strategy = from_type(f.type, known, f.encode_name)
            (required if f.required else optional)[f.encode_name] = strategy
        if t.tag_field is not None:
            (required if tag_required else optional)[t.tag_field] = st.just(t.tag)
        return st.fixed_dictionaries(required, optional=optional)
    if isinstance(t, mi.UnionType):
        tagged = sum(isinstance(x, mi.StructType) for x in t.types) > 1
        return st.one_of([from_type(x, known, name, tag_required=tagged) for x in t.types])
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        if name == "tokens":
            return st.lists(st.one_of(st.integers(-1, 270), st.sampled_from(EXTREME_INTS)), max_size=12)
        return st.lists(from_type(t.item_type, known, name), max_size=4)
    if isinstance(t, mi.DictType):
        return st.dictionaries(from_type(t.key_type, known), from_type(t.value_type, known, name), max_size=3)
    if isinstance(t, mi.StrType):
        return _strings(name, known)
    if isinstance(t, mi.IntType):
        if name in ("seq_id", "model_seq_id", "sampling_session_seq_id") and known.get(name):
            return st.one_of(st.sampled_from([int(x) for x in known[name]]), _ints())
        return _ints()
    if isinstance(t, mi.FloatType):
        return _floats()
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(list(t.values))
    if isinstance(t, (mi.BytesType, mi.ByteArrayType)):
        return st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode())
    if isinstance(t, mi.DateTimeType):
        return st.one_of(st.datetimes().map(lambda d: d.isoformat() + "Z"), st.text(max_size=10))
    if isinstance(t, mi.AnyType):
        return json_values()
    return json_values()


def struct_docs(cls: type, known: Known) -> st.SearchStrategy[dict[str, Any]]:
    return from_type(mi.type_info(cls), known)


# -- mutations ---------------------------------------------------------------
_DEEP = "\x01deep\x01"


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _set(doc[head], rest, value)}
    out = list(doc)
    out[head] = _set(out[head], rest, value)
    return out


def hostile_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        json_values(),
        st.sampled_from(EXTREME_INTS),
        st.sampled_from([1e308, -1e308, "x" * 100_000, ["t"] * 20_000, _DEEP, {"": None}, [], {}]),
        st.sampled_from(HOSTILE_STRINGS),
    )


def _encode(doc: Any, deep: int) -> bytes:
    raw = msgspec.json.encode(doc)
    marker = msgspec.json.encode(_DEEP)
    if marker in raw:
        raw = raw.replace(marker, b"[" * deep + b"]" * deep, 1).replace(marker, b"0")
    return raw


@st.composite
def hostile_body(draw: st.DrawFn, docs: st.SearchStrategy[Any], content_type: str = "application/json") -> tuple[bytes, dict[str, str]]:
    """(body, headers): a document as is, mutated, garbled, or badly compressed."""
    doc = draw(docs)
    shape = draw(st.sampled_from(["as_is", "as_is", "mutated", "mutated", "twice", "garbage", "compressed"]))
    if shape in ("mutated", "twice"):
        for _ in range(1 if shape == "mutated" else 2):
            path = draw(st.sampled_from(_paths(doc)))
            doc = _set(doc, path, draw(hostile_values()))
    body = _encode(doc, deep=draw(st.sampled_from([40, 600, 5000, 100_000])))
    headers = {"content-type": content_type}
    if shape == "garbage":
        how = draw(st.sampled_from(["truncate", "random", "other_json", "empty", "flip"]))
        if how == "truncate" and body:
            body = body[: draw(st.integers(0, len(body) - 1))]
        elif how == "random":
            body = draw(st.binary(max_size=256))
        elif how == "other_json":
            body = msgspec.json.encode(draw(json_values()))
        elif how == "empty":
            body = b""
        elif how == "flip" and body:
            i = draw(st.integers(0, len(body) - 1))
            body = body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1 :]
    if shape == "compressed":
        encoding = draw(st.sampled_from(["gzip", "deflate", "zstd", "br", "gzip, zstd", "identity", "GZIP"]))
        packed = {
            "gzip": gzip.compress,
            "GZIP": gzip.compress,
            "deflate": zlib.compress,
            "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
        }.get(encoding, lambda b: b)(body)
        damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "mislabel"]))
        if damage == "truncate" and packed:
            packed = packed[: draw(st.integers(0, len(packed) - 1))]
        elif damage == "flip" and packed:
            i = draw(st.integers(0, len(packed) - 1))
            packed = packed[:i] + bytes([packed[i] ^ 0x5A]) + packed[i + 1 :]
        elif damage == "mislabel":
            encoding = draw(st.sampled_from(["gzip", "zstd", "deflate"]))
            packed = body
        body = packed
        headers["content-encoding"] = encoding
    return body, headers
