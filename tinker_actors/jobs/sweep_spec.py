"""The sampling-sweep spec: one file that names the whole sweep.

A spec is TOML (read with the stdlib ``tomllib``) or JSON with the same shape::

    [sweep]
    name = "temps-v1"            # the spec id; part of every request key

    [model]
    base_model = "Qwen/Qwen3-8B"  # or: model_path = "tinker://run-1/sampler_weights/final"

    [input]
    prompts = "prompts.jsonl"     # relative to the spec file

    [sampling]                    # a list value is a grid axis
    temperature = [0.0, 0.7, 1.0]
    top_p = 1.0
    top_k = -1
    max_tokens = [64, 256]
    num_samples = 4
    seed = [1, 2]
    stop = ["\\n\\n"]             # one stop setting; a list of lists is an axis
    include_prompt_logprobs = false
    topk_prompt_logprobs = 0
    topk_sample_logprobs = 0

    [output]
    journal = "sweep.journal.sqlite"
    results = "results.jsonl"

    [concurrency]
    max = 256                     # the AIMD controller starts here
    min = 4                       # and never goes below this

    [retry]
    give_up_after_s = 7200        # stop (resumable) after the server was unreachable this long; inf: never

Every prompt × every point of the grid is one request. The grid's axes are
expanded in a fixed order (temperature, top_p, top_k, max_tokens, num_samples,
seed, stop) whatever order the file lists them in, so a setting's index depends
only on the values, never on how the file was formatted.

``stop`` is special because one stop setting is itself a list: a string or a
list of strings/ints is one setting; a list whose items are lists (or a mix of
strings and lists) is an axis of settings.

Prompts are JSONL, one per line: ``{"text": "..."}`` or ``{"tokens": [1, 2]}``
with an optional ``"id"`` (a string or int). A line without an id gets
``line-<n>``, which stays stable as long as lines are only appended.

Keys. A request's identity covers everything that decides its result: its
*content digest* hashes the model (base model or model path), the prompt
(text or token ids), every sampling parameter (temperature, top_p, top_k,
max_tokens, seed, stop), num_samples and the request options
(include_prompt_logprobs, topk_prompt_logprobs, topk_sample_logprobs). The
request key is a hash of (spec id, prompt id, content digest), and the
idempotency key is derived from the request key (and a generation number, 0
until the server forgets a future; see docs/sweep.md). So the keys are the
same on every resume, and a request re-sent after a crash is recognised by the
server as the one it has already seen; but a sweep whose grid or prompts
changed under the same name gets new keys, never an old result.

The spec hash covers everything that changes what a request means (model,
grid, flags) but not the prompt file, so a sweep can grow by appending prompts;
the journal refuses a prompt whose content changed under the same id.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from tinker_actors.errors import ConfigError, ValidationError

__all__ = [
    "ModelRef",
    "Prompt",
    "SamplingSetting",
    "SweepSpec",
    "SweepRequest",
    "load_spec",
    "parse_spec",
    "load_prompts",
    "expand_grid",
    "plan_requests",
    "request_key",
    "request_content",
    "idempotency_key",
]

# The fixed expansion order of the grid; also the set of keys [sampling] accepts
# as sampling parameters.
GRID_AXES = ("temperature", "top_p", "top_k", "max_tokens", "num_samples", "seed", "stop")
_SAMPLING_FLAGS = ("include_prompt_logprobs", "topk_prompt_logprobs", "topk_sample_logprobs")
_SECTIONS = {
    "sweep": {"name"},
    "model": {"base_model", "model_path"},
    "input": {"prompts"},
    "sampling": set(GRID_AXES) | set(_SAMPLING_FLAGS),
    "output": {"journal", "results"},
    "concurrency": {"max", "min"},
    "retry": {"give_up_after_s"},
}
# How long a sweep keeps trying while the server is unreachable before it
# stops with a resumable journal: the official SDK's own stuck-request limit.
DEFAULT_GIVE_UP_AFTER_S = 7200.0
# A sweep bigger than this is almost certainly a typo in the grid (and would
# take the journal minutes just to plan); shard it instead.
MAX_REQUESTS = 10_000_000

Stop = str | tuple[str, ...] | tuple[int, ...] | None


class ModelRef(msgspec.Struct, frozen=True, kw_only=True):
    """Exactly one of ``base_model`` and ``model_path`` (a ``tinker://`` path)."""

    base_model: str | None = None
    model_path: str | None = None


class Prompt(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    line: int
    text: str | None = None
    tokens: tuple[int, ...] | None = None

    def digest(self) -> str:
        """A digest of the prompt's content, stored beside each request."""
        body = {"text": self.text} if self.text is not None else {"tokens": list(self.tokens or ())}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


class SamplingSetting(msgspec.Struct, frozen=True, kw_only=True):
    """One point of the grid. Field names and defaults are those of SamplingParams."""

    index: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int | None = None
    num_samples: int = 1
    seed: int | None = None
    stop: Stop = None

    def sampling_params(self) -> dict[str, Any]:
        """The wire ``SamplingParams`` as a dict (None fields left out)."""
        params: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.seed is not None:
            params["seed"] = self.seed
        if self.stop is not None:
            params["stop"] = self.stop if isinstance(self.stop, str) else list(self.stop)
        return params

    def as_dict(self) -> dict[str, Any]:
        """Everything that identifies the setting, for results and exports."""
        return {"index": self.index, "num_samples": self.num_samples, **self.sampling_params()}


class SweepSpec(msgspec.Struct, frozen=True, kw_only=True):
    spec_id: str
    spec_hash: str
    source: str
    model: ModelRef
    prompts_path: Path
    settings: tuple[SamplingSetting, ...]
    journal_path: Path
    results_path: Path
    concurrency_max: int = 64
    concurrency_min: int = 1
    include_prompt_logprobs: bool = False
    topk_prompt_logprobs: int = 0
    topk_sample_logprobs: int = 0
    # None: keep trying for as long as the server is unreachable
    give_up_after_s: float | None = DEFAULT_GIVE_UP_AFTER_S

    def request_options(self) -> dict[str, Any]:
        """The per-request options every request of the sweep carries."""
        return {
            "include_prompt_logprobs": self.include_prompt_logprobs,
            "topk_prompt_logprobs": self.topk_prompt_logprobs,
            "topk_sample_logprobs": self.topk_sample_logprobs,
        }


class SweepRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One prompt at one setting: the unit the journal tracks."""

    key: str
    idempotency_key: str
    prompt: Prompt
    setting: SamplingSetting
    content: str  # request_content(): what the server is asked, as a digest

    @property
    def payload_digest(self) -> str:
        return self.content


def request_content(model: ModelRef, prompt: Prompt, setting: SamplingSetting, options: dict[str, Any]) -> str:
    """A digest of everything that decides a request's result.

    The model, the prompt's content (text or token ids; a text prompt's tokens
    follow from the text and the model's tokenizer), every sampling parameter,
    num_samples and the request options. Two requests with the same digest
    ask the server the same question.
    """
    body = {
        "model": msgspec.to_builtins(model),
        "prompt": {"text": prompt.text} if prompt.text is not None else {"tokens": list(prompt.tokens or ())},
        "sampling": setting.sampling_params(),
        "num_samples": setting.num_samples,
        "options": dict(options),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def request_key(spec_id: str, prompt_id: str, content: str) -> str:
    """The stable key of one request (NUL-separated so parts cannot run together)."""
    raw = f"{spec_id}\x00{prompt_id}\x00{content}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def idempotency_key(key: str, generation: int = 0) -> str:
    """The ``X-Idempotency-Key`` of a request key at a generation; stable across resumes.

    Generation 0 is the request's first key. When the server has forgotten the
    future a key points to (410, or 404 after a restart), the sweep moves the
    request to the next generation and journals it before sending, so the new
    key is as stable across crashes as the first one.
    """
    raw = b"idempotency\x00" + key.encode() + (b"" if generation == 0 else f"\x00{generation}".encode())
    return "sweep-" + hashlib.sha256(raw).hexdigest()[:32]


# --------------------------------------------------------------------- parsing


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file (``.toml`` or ``.json``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read sweep spec: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        fmt = "json"
    elif path.suffix.lower() == ".toml":
        fmt = "toml"
    else:
        raise ConfigError(f"{path}: sweep spec must end in .toml or .json")
    return parse_spec(text, fmt=fmt, path=path)


def parse_spec(text: str, *, fmt: str, path: str | Path = "<spec>") -> SweepSpec:
    path = Path(path)
    doc = _decode(text, fmt, path)
    where = _Where(path, text, fmt)
    for section, value in doc.items():
        if section not in _SECTIONS:
            raise where.error(None, section, f"unknown section (expected one of {sorted(_SECTIONS)})")
        if not isinstance(value, dict):
            raise where.error(None, section, "must be a table/object")
        for key in value:
            if key not in _SECTIONS[section]:
                raise where.error(section, key, f"unknown key (expected one of {sorted(_SECTIONS[section])})")

    def get(section: str, key: str, default: Any = None) -> Any:
        return doc.get(section, {}).get(key, default)

    model = ModelRef(base_model=get("model", "base_model"), model_path=get("model", "model_path"))
    if (model.base_model is None) == (model.model_path is None):
        raise where.error("model", "base_model", "give exactly one of base_model and model_path")
    for key in ("base_model", "model_path"):
        value = getattr(model, key)
        if value is not None and (not isinstance(value, str) or not value):
            raise where.error("model", key, "must be a non-empty string")
    if model.model_path is not None and not model.model_path.startswith("tinker://"):
        raise where.error("model", "model_path", "must be a tinker:// path")

    base = path.parent
    prompts = _path(where, base, "input", "prompts", get("input", "prompts"), required=True)
    journal = _path(where, base, "output", "journal", get("output", "journal"), required=True)
    results = _path(where, base, "output", "results", get("output", "results"), required=True)

    cmax = _int(where, "concurrency", "max", get("concurrency", "max", 64), low=1)
    cmin = _int(where, "concurrency", "min", get("concurrency", "min", 1), low=1)
    if cmin > cmax:
        raise where.error("concurrency", "min", f"min ({cmin}) is above max ({cmax})")

    sampling = doc.get("sampling", {})
    include_pl = sampling.get("include_prompt_logprobs", False)
    if not isinstance(include_pl, bool):
        raise where.error("sampling", "include_prompt_logprobs", "must be true or false")
    topk_p = _int(where, "sampling", "topk_prompt_logprobs", sampling.get("topk_prompt_logprobs", 0), low=0)
    topk_s = _int(where, "sampling", "topk_sample_logprobs", sampling.get("topk_sample_logprobs", 0), low=0)

    settings = expand_grid({k: v for k, v in sampling.items() if k in GRID_AXES}, where=where)
    seen: dict[str, int] = {}
    for setting in settings:
        point = json.dumps({"n": setting.num_samples, **setting.sampling_params()}, sort_keys=True)
        if point in seen:
            raise where.error(
                "sampling", "*", f"settings {seen[point]} and {setting.index} are the same point "
                f"({point}); an axis lists a value twice"
            )
        seen[point] = setting.index

    give_up = get("retry", "give_up_after_s", DEFAULT_GIVE_UP_AFTER_S)
    if isinstance(give_up, bool) or not isinstance(give_up, (int, float)) or not give_up > 0:
        raise where.error("retry", "give_up_after_s", f"must be a positive number of seconds (or inf), got {give_up!r}")
    if math.isinf(give_up):
        give_up = None

    name = get("sweep", "name")
    # Only what changes the meaning of a request goes into the hash; output
    # paths and concurrency may change between runs of the same sweep.
    identity = {
        "model": msgspec.to_builtins(model),
        "settings": [s.as_dict() for s in settings],
        "flags": [include_pl, topk_p, topk_s],
        "name": name,
    }
    spec_hash = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    if name is None:
        spec_id = "spec-" + spec_hash[:16]
    elif isinstance(name, str) and name:
        spec_id = name
    else:
        raise where.error("sweep", "name", "must be a non-empty string")

    return SweepSpec(
        spec_id=spec_id,
        spec_hash=spec_hash,
        source=str(path),
        model=model,
        prompts_path=prompts,
        settings=tuple(settings),
        journal_path=journal,
        results_path=results,
        concurrency_max=cmax,
        concurrency_min=cmin,
        include_prompt_logprobs=include_pl,
        topk_prompt_logprobs=topk_p,
        topk_sample_logprobs=topk_s,
        give_up_after_s=None if give_up is None else float(give_up),
    )


def expand_grid(sampling: dict[str, Any], *, where: _Where | None = None) -> list[SamplingSetting]:
    """The cartesian product of the list-valued settings, in the fixed axis order."""
    where = where or _Where(Path("<sampling>"), "", "toml")
    axes: list[list[Any]] = []
    for axis in GRID_AXES:
        if axis not in sampling:
            axes.append([_DEFAULTS[axis]])
            continue
        raw = sampling[axis]
        values = _stop_axis(raw) if axis == "stop" else (raw if isinstance(raw, list) else [raw])
        if not values:
            raise where.error("sampling", axis, "an empty list gives an empty grid")
        axes.append([_check_value(where, axis, v) for v in values])
    total = 1
    for values in axes:
        total *= len(values)
    if total > MAX_REQUESTS:
        raise where.error("sampling", "*", f"grid has {total} settings; shard the sweep instead")
    out = []
    for index, combo in enumerate(itertools.product(*axes)):
        out.append(SamplingSetting(index=index, **dict(zip(GRID_AXES, combo, strict=True))))
    return out


_DEFAULTS: dict[str, Any] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": -1,
    "max_tokens": None,
    "num_samples": 1,
    "seed": None,
    "stop": None,
}


def _stop_axis(raw: Any) -> list[Any]:
    if isinstance(raw, list) and any(isinstance(item, list) for item in raw):
        return raw
    return [raw]


def _check_value(where: _Where, axis: str, value: Any) -> Any:
    def bad(msg: str) -> ConfigError:
        return where.error("sampling", axis, f"{msg}, got {value!r}")

    if axis in ("temperature", "top_p"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("must be a number")
        value = float(value)
        if axis == "temperature" and value < 0:
            raise bad("must be >= 0")
        if axis == "top_p" and not 0 < value <= 1:
            raise bad("must be in (0, 1]")
        return value
    if axis == "stop":
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise bad("must be a string, a list of strings or a list of token ids")
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad("must be an integer")
    low = {"top_k": -1, "max_tokens": 1, "num_samples": 1, "seed": 0}[axis]
    if value < low:
        raise bad(f"must be >= {low}")
    if axis == "top_k" and value == 0:
        raise bad("must be -1 (no limit) or >= 1")
    return value


def _int(where: _Where, section: str, key: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(section, key, f"must be an integer, got {value!r}")
    if value < low:
        raise where.error(section, key, f"must be >= {low}, got {value}")
    return value


def _path(where: _Where, base: Path, section: str, key: str, value: Any, *, required: bool) -> Path:
    if value is None and required:
        raise where.error(section, key, "is required")
    if not isinstance(value, str) or not value:
        raise where.error(section, key, f"must be a non-empty path string, got {value!r}")
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _decode(text: str, fmt: str, path: Path) -> dict[str, Any]:
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # The message already ends in "(at line L, column C)".
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if fmt == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}:1: a sweep spec must be a JSON object")
        return doc
    raise ConfigError(f"{path}: unknown spec format {fmt!r}")


class _Where:
    """Turns (section, key) into ``file:line: [section] key: ...`` error text.

    Neither tomllib nor json reports where a *valid* key sits, so the line is
    found by a best-effort scan for the key inside its section.
    """

    def __init__(self, path: Path, text: str, fmt: str) -> None:
        self.path, self.lines, self.fmt = path, text.splitlines(), fmt

    def line_of(self, section: str | None, key: str) -> int | None:
        in_section = section is None or self.fmt == "json"
        for n, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if self.fmt == "toml" and line.startswith("["):
                name = line.strip("[] ")
                if section is None and name == key:
                    return n
                in_section = section is None or name == section
                continue
            if self.fmt == "json" and section is not None and f'"{section}"' in line:
                in_section = True
            if not in_section:
                continue
            if self.fmt == "toml" and (line.startswith(f"{key} ") or line.startswith(f"{key}=")):
                return n
            if self.fmt == "json" and f'"{key}"' in line:
                return n
        return None

    def error(self, section: str | None, key: str, message: str) -> ConfigError:
        line = self.line_of(section, key)
        loc = f"{self.path}:{line}" if line else str(self.path)
        name = f"[{section}] {key}" if section else f"[{key}]"
        return ConfigError(f"{loc}: {name}: {message}")


# --------------------------------------------------------------------- prompts


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read a JSONL prompt file strictly; errors name the file and line."""
    path = Path(path)
    try:
        fh = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read prompts: {exc.strerror or exc}") from None
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    with fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            prompt = _parse_prompt(path, n, raw)
            if prompt.id in seen:
                raise ValidationError(f"{path}:{n}: duplicate prompt id {prompt.id!r} (first on line {seen[prompt.id]})", field="id")
            seen[prompt.id] = n
            prompts.append(prompt)
    if not prompts:
        raise ValidationError(f"{path}: no prompts")
    return prompts


def _parse_prompt(path: Path, n: int, raw: str) -> Prompt:
    def bad(msg: str, key: str | None = None) -> ValidationError:
        return ValidationError(f"{path}:{n}: {msg}", field=key)

    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise bad(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise bad("each line must be a JSON object")
    extra = set(obj) - {"id", "text", "tokens"}
    if extra:
        raise bad(f"unknown keys {sorted(extra)} (expected id, text or tokens)", sorted(extra)[0])
    if ("text" in obj) == ("tokens" in obj):
        raise bad('give exactly one of "text" and "tokens"', "text")
    pid = obj.get("id", f"line-{n}")
    if isinstance(pid, bool) or not isinstance(pid, (str, int)) or pid == "":
        raise bad(f"id must be a non-empty string or an integer, got {pid!r}", "id")
    if "text" in obj:
        if not isinstance(obj["text"], str) or not obj["text"]:
            raise bad("text must be a non-empty string", "text")
        return Prompt(id=str(pid), line=n, text=obj["text"])
    tokens = obj["tokens"]
    if not isinstance(tokens, list) or not tokens:
        raise bad("tokens must be a non-empty list of integers", "tokens")
    for i, t in enumerate(tokens):
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise bad(f"tokens[{i}] must be a non-negative integer, got {t!r}", "tokens")
    return Prompt(id=str(pid), line=n, tokens=tuple(tokens))


def plan_requests(spec: SweepSpec, prompts: list[Prompt]) -> Iterator[SweepRequest]:
    """Every prompt × every setting, prompt-major (so one prompt's settings run together)."""
    total = len(prompts) * len(spec.settings)
    if total > MAX_REQUESTS:
        raise ValidationError(f"{total} requests is more than {MAX_REQUESTS}; shard the sweep")
    options = spec.request_options()
    for prompt in prompts:
        for setting in spec.settings:
            content = request_content(spec.model, prompt, setting, options)
            key = request_key(spec.spec_id, prompt.id, content)
            yield SweepRequest(
                key=key, idempotency_key=idempotency_key(key), prompt=prompt, setting=setting, content=content
            )
