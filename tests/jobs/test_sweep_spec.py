"""The sweep spec: grid expansion, strict errors, stable keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinker_actors.errors import ConfigError, ValidationError
from tinker_actors.jobs.sweep_spec import (
    idempotency_key,
    load_prompts,
    load_spec,
    parse_spec,
    plan_requests,
    request_key,
)

SPEC = """\
[sweep]
name = "grid-test"

[model]
base_model = "Qwen/Qwen3-8B"

[input]
prompts = "prompts.jsonl"

[sampling]
temperature = [0.0, 0.7, 1.0]
max_tokens = [16, 64]
num_samples = 4
seed = [1, 2]
stop = ["\\n\\n"]
include_prompt_logprobs = true

[output]
journal = "out/j.sqlite"
results = "out/r.jsonl"

[concurrency]
max = 128
min = 2
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_grid_is_cartesian_product_in_fixed_order(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "s.toml", SPEC))
    assert len(spec.settings) == 3 * 2 * 2
    assert [s.index for s in spec.settings] == list(range(12))
    # fixed axis order: temperature varies slowest, seed fastest
    first = spec.settings[0]
    assert (first.temperature, first.max_tokens, first.seed) == (0.0, 16, 1)
    assert (spec.settings[1].seed, spec.settings[2].max_tokens) == (2, 64)
    assert all(s.num_samples == 4 and s.stop == ("\n\n",) for s in spec.settings)
    assert spec.settings[0].sampling_params() == {
        "temperature": 0.0, "top_p": 1.0, "top_k": -1, "max_tokens": 16, "seed": 1, "stop": ["\n\n"],
    }
    assert spec.journal_path == tmp_path / "out/j.sqlite"
    assert (spec.concurrency_max, spec.concurrency_min, spec.include_prompt_logprobs) == (128, 2, True)


def test_key_order_in_file_does_not_change_indices_or_hash(tmp_path: Path) -> None:
    reordered = SPEC.replace("temperature = [0.0, 0.7, 1.0]\nmax_tokens = [16, 64]", "max_tokens = [16, 64]\ntemperature = [0.0, 0.7, 1.0]")
    assert reordered != SPEC
    a = load_spec(write(tmp_path, "a.toml", SPEC))
    b = load_spec(write(tmp_path, "b.toml", reordered))
    assert a.settings == b.settings and a.spec_hash == b.spec_hash
    # output paths and concurrency are not part of what a request means
    c = load_spec(write(tmp_path, "c.toml", SPEC.replace("max = 128", "max = 7")))
    assert c.spec_hash == a.spec_hash
    d = load_spec(write(tmp_path, "d.toml", SPEC.replace("num_samples = 4", "num_samples = 5")))
    assert d.spec_hash != a.spec_hash


def test_json_spec_and_stop_axis(tmp_path: Path) -> None:
    doc = {
        "model": {"model_path": "tinker://run-1/sampler_weights/final"},
        "input": {"prompts": "p.jsonl"},
        "sampling": {"stop": [["a"], ["b", "c"], [7, 8]], "top_k": [5, -1]},
        "output": {"journal": "j", "results": "r"},
    }
    spec = load_spec(write(tmp_path, "s.json", json.dumps(doc, indent=2)))
    # top_k comes before stop in the fixed order, so stop varies fastest
    assert [(s.top_k, s.stop) for s in spec.settings] == [
        (5, ("a",)), (5, ("b", "c")), (5, (7, 8)), (-1, ("a",)), (-1, ("b", "c")), (-1, (7, 8)),
    ]
    assert spec.model.model_path.startswith("tinker://") and spec.model.base_model is None
    assert spec.spec_id.startswith("spec-")  # derived from the hash when unnamed


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (("temperature = [0.0, 0.7, 1.0]", "temperature = [0.0, -1.0]"), r"s\.toml:11: \[sampling\] temperature: must be >= 0"),
        (("seed = [1, 2]", "seed = [1, \"x\"]"), r"s\.toml:14: \[sampling\] seed: must be an integer"),
        (("max = 128", "max = 128\nburst = 3"), r"\[concurrency\] burst: unknown key"),
        (("min = 2", "min = 500"), r"\[concurrency\] min: min \(500\) is above max"),
        (("base_model = \"Qwen/Qwen3-8B\"", "model_path = \"s3://x\""), r"\[model\] model_path: must be a tinker:// path"),
        (("prompts = \"prompts.jsonl\"", ""), r"\[input\] prompts: is required"),
        (("max_tokens = [16, 64]", "max_tokens = []"), r"max_tokens: an empty list"),
        (("[output]", "[outptu]"), r"s\.toml:18: \[outptu\]: unknown section"),
        (("top_p", "top_p"), None),  # sanity: the unedited spec parses
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, edit: tuple[str, str], needle: str | None) -> None:
    path = write(tmp_path, "s.toml", SPEC.replace(*edit))
    if needle is None:
        load_spec(path)
        return
    with pytest.raises(ConfigError, match=needle):
        load_spec(path)


def test_syntax_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"s\.toml: invalid TOML: .*line 3"):
        load_spec(write(tmp_path, "s.toml", "[model]\nbase_model = 'x'\nnope nope\n"))
    with pytest.raises(ConfigError, match=r"s\.json:2: invalid JSON"):
        load_spec(write(tmp_path, "s.json", "{\n  'x': 1}"))
    with pytest.raises(ConfigError, match="must end in .toml or .json"):
        load_spec(write(tmp_path, "s.yaml", "a: 1"))
    with pytest.raises(ConfigError, match="exactly one of base_model and model_path"):
        parse_spec('[model]\nbase_model = "a"\nmodel_path = "tinker://a/b/c"\n', fmt="toml")


def test_prompts_parse_and_errors(tmp_path: Path) -> None:
    p = write(tmp_path, "p.jsonl", '{"text": "hello"}\n\n{"id": 7, "tokens": [1, 2, 3]}\n{"id": "z", "text": "x"}\n')
    prompts = load_prompts(p)
    assert [(q.id, q.line) for q in prompts] == [("line-1", 1), ("7", 3), ("z", 4)]
    assert prompts[1].tokens == (1, 2, 3) and prompts[0].text == "hello"
    cases = [
        ('{"text": "a"}\n{"text": "b", "tokens": [1]}\n', r"p\.jsonl:2: .*exactly one of"),
        ('{"id": "a", "text": "a"}\n{"id": "a", "text": "b"}\n', r"p\.jsonl:2: duplicate prompt id 'a' \(first on line 1\)"),
        ('{"tokens": [1, -2]}\n', r"p\.jsonl:1: tokens\[1\] must be a non-negative integer"),
        ('{"text": "a", "prompt": 1}\n', r"unknown keys \['prompt'\]"),
        ('not json\n', r"p\.jsonl:1: invalid JSON"),
        ('\n\n', r"no prompts"),
    ]
    for text, needle in cases:
        with pytest.raises(ValidationError, match=needle):
            load_prompts(write(tmp_path, "p.jsonl", text))


def test_request_keys_are_stable_and_distinct(tmp_path: Path) -> None:
    write(tmp_path, "prompts.jsonl", "".join(json.dumps({"id": f"q{i}", "text": f"t{i}"}) + "\n" for i in range(5)))
    spec = load_spec(write(tmp_path, "s.toml", SPEC))
    reqs = list(plan_requests(spec, load_prompts(spec.prompts_path)))
    assert len(reqs) == 5 * 12
    assert len({r.key for r in reqs}) == len(reqs)
    assert len({r.idempotency_key for r in reqs}) == len(reqs)
    again = list(plan_requests(load_spec(tmp_path / "s.toml"), load_prompts(spec.prompts_path)))
    assert [(r.key, r.idempotency_key) for r in again] == [(r.key, r.idempotency_key) for r in reqs]
    r = reqs[13]
    assert r.key == request_key("grid-test", r.prompt.id, r.content)
    assert r.idempotency_key == idempotency_key(r.key) and r.idempotency_key.startswith("sweep-")
    # ids cannot run together: ("a", "12") and ("a1", "2") are different requests
    assert request_key("s", "a", "12") != request_key("s", "a1", "2")
    # a later generation is a different key, derived the same way every time
    assert idempotency_key(r.key, 1) not in (idempotency_key(r.key), idempotency_key(r.key, 2))
    assert idempotency_key(r.key, 1) == idempotency_key(r.key, 1)


def test_request_identity_covers_every_part_of_its_content(tmp_path: Path) -> None:
    """Changing anything a result depends on changes the key and the idempotency key (issue 10, case 1)."""
    write(tmp_path, "prompts.jsonl", json.dumps({"id": "q", "tokens": [1, 2, 3]}) + "\n")
    one = SPEC.replace("temperature = [0.0, 0.7, 1.0]", "temperature = 0.7").replace("max_tokens = [16, 64]", "max_tokens = 16")
    one = one.replace("seed = [1, 2]", "seed = 1")

    def keys(text: str, prompts: str | None = None) -> tuple[str, str]:
        if prompts is not None:
            write(tmp_path, "prompts.jsonl", prompts)
        spec = load_spec(write(tmp_path, "s.toml", text))
        (req,) = plan_requests(spec, load_prompts(spec.prompts_path))
        write(tmp_path, "prompts.jsonl", json.dumps({"id": "q", "tokens": [1, 2, 3]}) + "\n")
        return req.key, req.idempotency_key

    base = keys(one)
    assert keys(one) == base  # stable
    edits = {
        "model": ('base_model = "Qwen/Qwen3-8B"', 'base_model = "Qwen/Qwen3-4B"'),
        "model_path": ('base_model = "Qwen/Qwen3-8B"', 'model_path = "tinker://run/sampler_weights/a"'),
        "temperature": ("temperature = 0.7", "temperature = 0.8"),
        "top_p": ("[sampling]", "[sampling]\ntop_p = 0.9"),
        "top_k": ("[sampling]", "[sampling]\ntop_k = 5"),
        "max_tokens": ("max_tokens = 16", "max_tokens = 17"),
        "seed": ("seed = 1", "seed = 2"),
        "stop": ('stop = ["\\n\\n"]', 'stop = ["."]'),
        "num_samples": ("num_samples = 4", "num_samples = 3"),
        "include_prompt_logprobs": ("include_prompt_logprobs = true", "include_prompt_logprobs = false"),
        "topk_prompt_logprobs": ("[sampling]", "[sampling]\ntopk_prompt_logprobs = 2"),
        "topk_sample_logprobs": ("[sampling]", "[sampling]\ntopk_sample_logprobs = 2"),
        "name": ('name = "grid-test"', 'name = "other"'),
    }
    seen = {base}
    for what, (old, new) in edits.items():
        assert old in one, what
        got = keys(one.replace(old, new))
        assert got[0] != base[0] and got[1] != base[1], what
        seen.add(got)
    assert len(seen) == len(edits) + 1
    # the prompt's content under the same id, text or tokens
    assert keys(one, json.dumps({"id": "q", "tokens": [1, 2, 4]}) + "\n") != base
    assert keys(one, json.dumps({"id": "q", "text": "abc"}) + "\n") != keys(one, json.dumps({"id": "q", "text": "abd"}) + "\n")
    # what does not change a result does not change the key
    assert keys(one.replace("max = 128", "max = 3").replace('journal = "out/j.sqlite"', 'journal = "x.sqlite"')) == base


def test_duplicate_grid_points_and_retry_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[sampling\] \*: settings 0 and 4 are the same point"):
        load_spec(write(tmp_path, "s.toml", SPEC.replace("temperature = [0.0, 0.7, 1.0]", "temperature = [0.5, 0.5]")))
    spec = load_spec(write(tmp_path, "s.toml", SPEC))
    assert spec.give_up_after_s == 7200.0
    spec = load_spec(write(tmp_path, "s.toml", SPEC + "\n[retry]\ngive_up_after_s = 90\n"))
    assert spec.give_up_after_s == 90.0
    assert load_spec(write(tmp_path, "s.toml", SPEC + "\n[retry]\ngive_up_after_s = inf\n")).give_up_after_s is None
    # not part of what a request means
    assert spec.spec_hash == load_spec(write(tmp_path, "t.toml", SPEC)).spec_hash
    for bad in ("0", "-1", '"1h"', "true"):
        with pytest.raises(ConfigError, match=r"\[retry\] give_up_after_s: must be a positive number"):
            load_spec(write(tmp_path, "s.toml", SPEC + f"\n[retry]\ngive_up_after_s = {bad}\n"))
