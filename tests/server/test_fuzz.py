"""Property-based fuzzing of every route of a real ``serve`` process (issue 11).

One server runs in a subprocess for the module, jailed: its working
directory, ``TMPDIR`` and ``HOME`` sit in a directory the test snapshots. For
every route, hypothesis sends bodies generated from the route's wire Struct,
as is and mutated (wrong types, extreme numbers, long strings, deep nests,
truncation, random bytes, other JSON, bad or lying compression; truncated
and garbled protobuf for forward_backward) and path and query parameters
drawn from real ids and hostile strings. Properties:

* no answer is >= 500 (and the connection is never dropped);
* the server is alive at the end and logged no error (no unhandled
  exception, no crashed or server-failed job);
* nothing was written outside its data dir.

Size: ``TINKER_FUZZ_EXAMPLES`` examples per route (default 200). The figures
in docs/reliability.md come from ``pytest tests/server/test_fuzz.py -q``.
``/_local/faults`` is left out: injecting 5xx is its job.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from fuzz_strategies import HOSTILE_STRINGS, hostile_body, struct_docs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinker_actors import wire
from tinker_actors.wire import protobuf as wpb

EXAMPLES = int(os.environ.get("TINKER_FUZZ_EXAMPLES", "200"))
BASE = "tinker-actors/byte-lm-tiny"
HEADERS = {"X-API-Key": "tml-fuzz"}
API = "/api/v1"


class Server:
    def __init__(self, jail: Path):
        self.jail = jail
        self.data = jail / "data"
        for d in ("tmp", "home"):
            (jail / d).mkdir(parents=True)
        env = {**os.environ, "TMPDIR": str(jail / "tmp"), "HOME": str(jail / "home")}
        # both streams to a file: a pipe nobody drains would block the server once full
        self.log = (jail / "server.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "tinker_actors.server", "serve", "--port", "0", "--data-dir", str(self.data),
                "--long-poll-timeout", "0.05", "--futures-batch-timeout", "0.05", "--seq-wait-timeout", "0.05",
            ],
            cwd=jail, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + 60
        match = None
        while match is None and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
            match = re.search(r"local server on (http://\S+)", (jail / "server.log").read_text())
        assert match, f"server did not start: {(jail / 'server.log').read_text()}"
        self.url = match.group(1)
        self.client = httpx.Client(base_url=self.url, headers=HEADERS, timeout=60)
        self.known: dict[str, list[str]] = {}
        self.state = {"next_seq": 4}  # the known model's next training seq_id
        self.statuses: Counter[int] = Counter()
        self.by_route: dict[str, Counter[int]] = {}
        self.requests = 0

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()

    def call(self, route: str, method: str, path: str, *, content: bytes | None = None,
             headers: dict[str, bytes] | None = None, params: dict[str, str] | None = None) -> httpx.Response:
        r = self.client.request(method, path, content=content, headers=headers, params=params)
        self.requests += 1
        self.statuses[r.status_code] += 1
        self.by_route.setdefault(route, Counter())[r.status_code] += 1
        if os.environ.get("TINKER_FUZZ_DEBUG") and r.status_code >= 400:
            print("DBG", route, r.status_code, r.text[:160])
        assert r.status_code < 500, f"{method} {path} -> {r.status_code}: {r.text[:500]}"
        return r

    def wait(self, request_id: str) -> dict[str, Any]:
        for _ in range(2000):
            r = self.client.post(f"{API}/retrieve_future", json={"request_id": request_id})
            out = r.json()
            if out.get("type") != "try_again":
                return out
        raise AssertionError("future never finished")

    def setup(self) -> None:
        """Real ids for the strategies: a session, a trained model, checkpoints, a sampler, futures."""
        post = self.client.post
        sid = post(f"{API}/create_session", json={"tags": [], "sdk_version": "fuzz"}).json()["session_id"]
        model = post(f"{API}/create_model", json={"session_id": sid, "model_seq_id": 0, "base_model": BASE, "lora_config": {"rank": 2}}).json()
        self.wait(model["request_id"])
        model_id = model["model_id"]
        paths = {}
        for seq, (route, name) in enumerate(
            [("save_weights", "ck"), ("save_weights_for_sampler", "sck"), ("save_weights_external", "ext")], start=1
        ):
            r = post(f"{API}/{route}", json={"model_id": model_id, "seq_id": seq, "path": name}).json()
            paths[name] = self.wait(r["request_id"])["path"]
        sampler = post(
            f"{API}/create_sampling_session", json={"session_id": sid, "sampling_session_seq_id": 0, "base_model": BASE}
        ).json()["sampling_session_id"]
        sample = post(f"{API}/asample", json={
            "sampling_session_id": sampler, "seq_id": 1, "sampling_params": {"max_tokens": 2},
            "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2]}]},
        }).json()["request_id"]
        self.known = {
            "session_id": [sid], "model_id": [model_id], "sampling_session_id": [sampler],
            "request_id": [sample, model["request_id"]], "path": ["ck", "new-ck", *paths.values()],
            "tinker_path": list(paths.values()), "source_path": list(paths.values()), "model_path": [paths["sck"]],
            "base_model": [BASE, "tinker-actors/byte-lm-small"], "seq_id": ["4", "5", "1"],
            "model_seq_id": ["1", "2"], "sampling_session_seq_id": ["1", "2"], "last_session_id": [sid],
            "run": [model_id], "name": ["ck", "sck", "ext"], "file": ["config.json", "weights.npz"],
        }

    def files_outside_data(self) -> set[str]:
        out = set()
        for p in self.jail.rglob("*"):
            rel = p.relative_to(self.jail)
            if rel.parts[0] != "data" and rel.name != "server.log":
                out.add(str(rel))
        return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    jail = tmp_path_factory.mktemp("jail")
    srv = Server(jail)
    try:
        srv.setup()
        before = srv.files_outside_data()
        start = time.perf_counter()
        yield srv
        elapsed = time.perf_counter() - start
        # the server outlived everything, said nothing alarming, wrote only its data dir
        assert srv.proc.poll() is None, "the server process died"
        assert srv.client.get(f"{API}/healthz").status_code == 200
        log = (jail / "server.log").read_text()
        for event in ("unhandled_error", "job_crashed", "job_failed", "Traceback"):
            assert event not in log, log[-4000:]
        assert srv.files_outside_data() == before
        print(
            f"\nFUZZ {srv.requests} requests over {len(ROUTES)} routes in {elapsed:.1f} s; "
            f"statuses {dict(sorted(srv.statuses.items()))}"
        )
        for route, counts in srv.by_route.items():
            print(f"  {route}: {dict(sorted(counts.items()))}")
        # the bodies reach the handlers, not only the decoder: most routes answered 2xx sometimes
        reached = [route for route, counts in srv.by_route.items() if any(200 <= c < 300 for c in counts)]
        assert len(reached) >= len(srv.by_route) * 3 // 4, sorted(set(srv.by_route) - set(reached))
    finally:
        srv.close()


# (method, path template, body Struct or None). Destructive routes come last,
# so the ids they retire stay useful to the routes before them.
ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "client/config", wire.ClientConfigRequest),
    ("POST", "client/dynamic_config", wire.ClientDynamicConfigRequest),
    ("POST", "create_session", wire.CreateSessionRequest),
    ("POST", "session_heartbeat", wire.SessionHeartbeatRequest),
    ("PUT", "sessions/{sid}/project", wire.SetSessionProjectRequest),
    ("GET", "sessions/{sid}/trace_export", None),
    ("POST", "sessions/search", wire.SessionSearchRequest),
    ("GET", "sessions", None),
    ("GET", "sessions/{sid}", None),
    ("GET", "get_server_capabilities", None),
    ("GET", "healthz", None),
    ("POST", "create_model", wire.CreateModelRequest),
    ("POST", "get_info", wire.GetInfoRequest),
    ("POST", "forward_backward", wire.ForwardBackwardRequest),
    ("POST", "forward_backward#proto", wire.ForwardBackwardRequest),
    ("POST", "forward", wire.ForwardRequest),
    ("POST", "optim_step", wire.OptimStepRequest),
    ("POST", "save_weights", wire.SaveWeightsRequest),
    ("POST", "save_weights_for_sampler", wire.SaveWeightsForSamplerRequest),
    ("POST", "save_weights_external", wire.SaveWeightsExternalRequest),
    ("POST", "load_weights", wire.LoadWeightsRequest),
    ("POST", "copy_weights", wire.CopyWeightsRequest),
    ("POST", "create_sampling_session", wire.CreateSamplingSessionRequest),
    ("POST", "join_sampling_session", wire.JoinSamplingSessionRequest),
    ("GET", "samplers/{sid}", None),
    ("POST", "asample", wire.SampleRequest),
    ("POST", "retrieve_future", wire.FutureRetrieveRequest),
    ("POST", "retrieve_futures", wire.FuturesRetrieveRequest),
    ("POST", "telemetry", wire.TelemetrySendRequest),
    ("POST", "weights_info", wire.WeightsInfoRequest),
    ("GET", "training_runs", None),
    ("GET", "training_runs/{run}", None),
    ("GET", "training_runs/{run}/checkpoints", None),
    ("GET", "checkpoints", None),
    ("GET", "training_runs/{run}/checkpoints/{kind}/{name}/archive", None),
    ("GET", "training_runs/{run}/checkpoints/{kind}/{name}/external_weights_urls", None),
    ("GET", "/_local/archive/{run}/{kind}/{name}", None),
    ("GET", "/_local/files/{run}/{kind}/{name}/{file}", None),
    ("GET", "/_local/trace/{sid}", None),
    ("GET", "/_local/stats", None),
    ("POST", "training_runs/{run}/checkpoints/{kind}/{name}/publish", None),
    ("PUT", "training_runs/{run}/checkpoints/{kind}/{name}/ttl", wire.CheckpointTtlRequest),
    ("POST", "cancel_future", wire.CancelFutureRequest),
    ("POST", "unload_model", wire.UnloadModelRequest),
    ("POST", "sessions/{sid}/finish", wire.SessionFinishRequest),
    ("DELETE", "training_runs/{run}/checkpoints/{kind}/{name}/publish", None),
    ("DELETE", "training_runs/{run}/checkpoints/{kind}/{name}", None),
]


# -- bodies a real client would send: the fuzz mutates these too, so that
# requests get past the decoder into the handlers and the model ---------------
def _tokens(lo: int = 1, hi: int = 12) -> st.SearchStrategy[list[int]]:
    # ids of the vocabulary, and now and then one just outside it or far outside int64
    ids = st.one_of(st.integers(0, 263), st.integers(0, 263), st.integers(0, 263), st.sampled_from([264, -1, 2**31, 2**63, -(2**63) - 1]))
    return st.lists(ids, min_size=lo, max_size=hi)


def _sampling_params() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"max_tokens": st.integers(1, 12)},
        optional={
            "temperature": st.sampled_from([0.0, 1e-9, 0.7, 1.0, 5.0, 1e6]),
            "top_k": st.sampled_from([-1, 1, 2, 50, 263, 264, 10**6]),
            "top_p": st.sampled_from([1e-9, 0.1, 0.9, 1.0]),
            "seed": st.integers(0, 2**63 - 1),
            "stop": st.one_of(
                st.none(), st.text(max_size=3), st.lists(st.text(max_size=3), max_size=4),
                st.lists(st.integers(0, 263), max_size=4),
            ),
        },
    )


def _datum(draw: st.DrawFn, loss: str) -> dict[str, Any]:
    tokens = draw(_tokens(2, 16))
    n = len(tokens) - 1
    floats = st.lists(st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e30, -1e30]), min_size=n, max_size=n)
    inputs = {"target_tokens": {"data": tokens[1:], "dtype": "int64", "shape": [n]}}
    names = ["weights"] if loss == "cross_entropy" else ["logprobs", "advantages"]
    for name in names:
        inputs[name] = {"data": draw(floats), "dtype": "float32", "shape": [n]}
    return {"model_input": {"chunks": [{"type": "encoded_text", "tokens": tokens[:-1]}]}, "loss_fn_inputs": inputs}


def templates(route: str, known: dict[str, list[str]], state: dict[str, int]) -> st.SearchStrategy[Any] | None:
    """A strategy of plausible bodies for ``route`` (None: the Struct strategy alone)."""
    sid, model, sampler = known["session_id"][0], known["model_id"][0], known["sampling_session_id"][0]
    seq = st.builds(lambda: state["next_seq"])  # the model's next seq_id, read when drawn
    paths = st.sampled_from(known["tinker_path"])
    names = st.sampled_from(["ck", "new", "a.b-c_d", "x" * 200])
    ttl = st.one_of(st.none(), st.sampled_from([1, 3600, 10**9, 0, -5]))
    fixed = st.fixed_dictionaries

    @st.composite
    def fb(draw: st.DrawFn, key: str) -> dict[str, Any]:
        loss = draw(st.sampled_from(["cross_entropy", "importance_sampling", "ppo", "cispo", "dro"]))
        config = draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(["clip_low_threshold", "clip_high_threshold", "beta"]), st.sampled_from([0.0, 0.2, 10.0, -1.0]), max_size=2)))
        inp = {"loss_fn": loss, "data": [_datum(draw, loss) for _ in range(draw(st.integers(1, 3)))]}
        if config is not None:
            inp["loss_fn_config"] = config
        tag = "forward" if key == "forward_input" else "forward_backward"
        return {key: inp, "model_id": model, "seq_id": draw(seq), "type": tag}

    table: dict[str, st.SearchStrategy[Any]] = {
        "create_session": fixed({"tags": st.lists(st.text(max_size=5), max_size=3), "sdk_version": st.text(max_size=5)},
                                optional={"user_metadata": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3), "project_id": st.text(max_size=5)}),
        "session_heartbeat": fixed({"session_id": st.just(sid)}),
        "create_model": fixed({"session_id": st.just(sid), "model_seq_id": st.integers(1, 3), "base_model": st.sampled_from(known["base_model"])},
                              optional={"lora_config": fixed({"rank": st.sampled_from([1, 2, 256, 257, 0])}, optional={"seed": st.integers(-1, 2**40), "train_mlp": st.booleans(), "train_attn": st.booleans(), "train_unembed": st.booleans()})}),
        "forward_backward": fb("forward_backward_input"),
        "forward": fb("forward_input"),
        "optim_step": fixed({"model_id": st.just(model), "seq_id": seq, "adam_params": fixed({}, optional={
            "learning_rate": st.sampled_from([0.0, 1e-3, 1e3, -1.0]), "beta1": st.sampled_from([0.0, 0.9, 0.999999, 1.0]),
            "beta2": st.sampled_from([0.0, 0.95, 1.0]), "eps": st.sampled_from([0.0, 1e-12, 1.0]),
            "weight_decay": st.sampled_from([0.0, 0.1, 1e9]), "grad_clip_norm": st.sampled_from([0.0, 1e-9, 1.0])})}),
        "save_weights": fixed({"model_id": st.just(model), "seq_id": seq, "path": names}, optional={"overwrite": st.booleans(), "ttl_seconds": ttl}),
        "save_weights_for_sampler": fixed({"model_id": st.just(model), "seq_id": seq}, optional={"path": names, "sampling_session_seq_id": st.integers(1, 4), "ttl_seconds": ttl}),
        "save_weights_external": fixed({"model_id": st.just(model), "seq_id": seq, "path": names}, optional={"ttl_seconds": ttl}),
        "load_weights": st.one_of(
            fixed({"session_id": st.just(sid), "model_seq_id": st.integers(1, 5), "path": paths, "optimizer": st.booleans()}),
            fixed({"model_id": st.just(model), "seq_id": seq, "path": paths, "optimizer": st.booleans()}),
        ),
        "copy_weights": fixed({"source_path": paths}, optional={"session_id": st.just(sid), "model_seq_id": st.integers(5, 9), "ttl_seconds": ttl}),
        "weights_info": fixed({"tinker_path": paths}),
        "create_sampling_session": fixed({"session_id": st.just(sid), "sampling_session_seq_id": st.integers(1, 4)},
                                         optional={"base_model": st.sampled_from(known["base_model"]), "model_path": st.sampled_from(known["model_path"] + known["tinker_path"])}),
        "join_sampling_session": fixed({"sampling_session_id": st.just(sampler)}),
        "asample": fixed(
            {"sampling_session_id": st.just(sampler), "prompt": fixed({"chunks": st.lists(fixed({"type": st.just("encoded_text"), "tokens": _tokens()}), min_size=1, max_size=2)}),
             "sampling_params": _sampling_params()},
            optional={"num_samples": st.integers(1, 4), "seq_id": st.integers(0, 10**9), "prompt_logprobs": st.booleans(),
                      "topk_prompt_logprobs": st.sampled_from([0, 1, 5, 64, 65]), "topk_sample_logprobs": st.sampled_from([0, 1, 5, 64, 65])},
        ),
        "retrieve_future": fixed({"request_id": st.sampled_from(known["request_id"])}, optional={"allow_metadata_only": st.booleans()}),
        "retrieve_futures": fixed({"target": fixed({"sampling_session_id": st.just(sampler)}, optional={"cloned_sampler_id": st.integers(0, 3)}),
                                   "prev_cursor": st.integers(0, 5)}, optional={"timeout": st.sampled_from([0.0, 0.01, -1.0])}),
        "cancel_future": fixed({"request_id": st.sampled_from(known["request_id"])}),
        "sessions/{sid}/finish": fixed({"reason": fixed({"type": st.sampled_from(["success", "errored", "interrupted"])})}),
        "sessions/{sid}/project": fixed({"project_id": st.text(max_size=8)}),
        "sessions/search": fixed({}, optional={"limit": st.integers(0, 1001), "display_name": st.text(max_size=4), "user_metadata": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2)}),
        "training_runs/{run}/checkpoints/{kind}/{name}/ttl": fixed({"ttl_seconds": ttl}),
    }
    return table.get(route)


TRAINING = {"forward_backward", "forward", "optim_step", "save_weights", "save_weights_for_sampler", "save_weights_external", "load_weights"}


def _segment(known: dict[str, list[str]], role: str) -> st.SearchStrategy[str]:
    real = {
        "sid": known["session_id"] + known["sampling_session_id"],
        "run": known["run"],
        "kind": ["weights", "sampler_weights", "external_weights"],
        "name": known["name"],
        "file": known["file"],
    }[role]
    made_up = st.one_of(st.text(min_size=1, max_size=20), st.sampled_from([s for s in HOSTILE_STRINGS if s]))
    return st.one_of(st.sampled_from(real), st.sampled_from(real), made_up)


def _path(draw: st.DrawFn, template: str, known: dict[str, list[str]]) -> str:
    path = template.split("#")[0]
    for role in re.findall(r"{(\w+)}", path):
        value = draw(_segment(known, role))
        path = path.replace("{" + role + "}", urllib.parse.quote(value, safe=":~"), 1)
    return path if path.startswith("/") else f"{API}/{path}"


def _query(draw: st.DrawFn) -> dict[str, str]:
    keys = st.sampled_from(["limit", "offset", "expires", "sig", "access_scope"])
    values = st.one_of(st.integers(-5, 20_000).map(str), st.sampled_from(["9" * 5000, "é", "%00", "", "1e3", "²"]), st.text(max_size=8))
    return draw(st.dictionaries(keys, values, max_size=3))


def _proto_bodies(known: dict[str, list[str]], docs: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Protobuf forward_backward bodies: encoded from a valid request, then truncated, flipped or replaced."""
    model_id = known["model_id"][0]

    @st.composite
    def bodies(draw: st.DrawFn) -> bytes:
        tokens = draw(st.lists(st.integers(0, 263), min_size=2, max_size=12))
        n = len(tokens) - 1
        datum = wire.Datum(
            model_input=wire.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * n},
        )
        req = wire.ForwardBackwardRequest(
            forward_backward_input=wire.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy"),
            model_id=draw(st.sampled_from([model_id, "nope"])),
            seq_id=draw(st.sampled_from([4, 5, 10**6, 2**31 - 1])),
        )
        raw = wpb.forward_backward_request_to_proto(req)
        how = draw(st.sampled_from(["as_is", "truncate", "flip", "random", "append"]))
        if how == "truncate":
            raw = raw[: draw(st.integers(0, len(raw) - 1))]
        elif how == "flip":
            i = draw(st.integers(0, len(raw) - 1))
            raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1 :]
        elif how == "random":
            raw = draw(st.binary(max_size=512))
        elif how == "append":
            raw = raw + draw(st.binary(min_size=1, max_size=64))
        return raw

    return bodies()


@pytest.mark.parametrize(("method", "template", "body_type"), ROUTES, ids=[f"{m} {t}" for m, t, _ in ROUTES])
def test_fuzz_route(server: Server, method: str, template: str, body_type: Any) -> None:
    known = server.known

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        path = _path(data.draw, template, known)
        params = _query(data.draw) if method == "GET" else None
        headers: dict[str, str] = {}
        content: bytes | None = None
        if template.endswith("#proto"):
            content = data.draw(_proto_bodies(known, st.nothing()))
            headers["content-type"] = wpb.PROTOBUF_CONTENT_TYPE
            if data.draw(st.booleans()):
                import zstandard

                content = zstandard.ZstdCompressor().compress(content)
                headers["content-encoding"] = "zstd"
        elif body_type is not None:
            plausible = templates(template, known, server.state)
            docs = struct_docs(body_type, known) if plausible is None else st.one_of(plausible, plausible, struct_docs(body_type, known))
            content, headers = data.draw(hostile_body(docs))
        # sometimes an idempotency key (reused across examples: conflicts), sometimes a hostile one
        key = data.draw(st.sampled_from([None] * 12 + ["k-1", "k-2", "k" * 300, "é"]))
        if key is not None:
            headers["x-idempotency-key"] = key
        raw_headers = {k: v.encode("utf-8") for k, v in headers.items()}  # non-ASCII values go as UTF-8 bytes
        r = server.call(f"{method} {template}", method, path, content=content, headers=raw_headers, params=params)
        if template in TRAINING and r.status_code == 200 and content is not None and b'"seq_id":%d' % server.state["next_seq"] in content:
            server.state["next_seq"] += 1  # the model accepted it: the next one is due

    run()
