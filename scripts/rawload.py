"""Raw HTTP/1.1 sampling load against a local server: the client costs almost nothing.

    python scripts/rawload.py HOST:PORT WORKERS SECONDS

Each worker thread keeps one keep-alive connection (the stdlib's
``http.client``, no client library) and loops over a sampling flow as the SDK
runs it: ``asample``, then ``retrieve_future`` with ``allow_metadata_only``
until the answer is not ``try_again``, then a plain poll if the server
announced ``complete_metadata``. It prints flows and requests per second.
docs/local-server.md quotes its figures against ``serve --null-compute``.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time

HEADERS = {"X-API-Key": "tml-rawload", "Content-Type": "application/json", "Accept": "application/x-protobuf"}
BASE = "tinker-actors/byte-lm-tiny"


def _post(conn: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, bytes]:
    conn.request("POST", f"/api/v1/{path}", body=json.dumps(body), headers=HEADERS)
    r = conn.getresponse()
    return r.status, r.read()


def _sampler(host: str, port: int) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    _, raw = _post(conn, "create_session", {"tags": [], "sdk_version": "rawload"})
    sid = json.loads(raw)["session_id"]
    _, raw = _post(conn, "create_sampling_session", {"session_id": sid, "sampling_session_seq_id": 0, "base_model": BASE})
    conn.close()
    return json.loads(raw)["sampling_session_id"]


def worker(host: str, port: int, sampler: str, seq0: int, stop: float, counts: list[int]) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    seq = seq0
    flows = requests = 0
    prompt = {"chunks": [{"type": "encoded_text", "tokens": list(b"the cat")}]}
    while time.monotonic() < stop:
        seq += 1
        body = {"sampling_session_id": sampler, "seq_id": seq, "prompt": prompt, "sampling_params": {"max_tokens": 8}}
        status, raw = _post(conn, "asample", body)
        requests += 1
        if status != 200:
            raise SystemExit(f"asample answered {status}: {raw[:200]!r}")
        rid = json.loads(raw)["request_id"]
        metadata_only = True
        while True:
            status, raw = _post(conn, "retrieve_future", {"request_id": rid, "allow_metadata_only": metadata_only})
            requests += 1
            if status != 200:
                raise SystemExit(f"retrieve_future answered {status}: {raw[:200]!r}")
            if raw[:1] != b"{":
                break  # the protobuf result
            answer = json.loads(raw)
            if answer.get("type") == "try_again":
                continue
            if answer.get("status") == "complete_metadata":
                metadata_only = False
                continue
            break
        flows += 1
    conn.close()
    counts.append(flows)
    counts.append(requests)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    host, _, port = argv[0].rpartition(":")
    workers, seconds = int(argv[1]), float(argv[2])
    sampler = _sampler(host, int(port))
    stop = time.monotonic() + seconds
    counts: list[int] = []
    threads = [
        threading.Thread(target=worker, args=(host, int(port), sampler, i * 1_000_000, stop, counts)) for i in range(workers)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    flows, requests = sum(counts[0::2]), sum(counts[1::2])
    print(f"{workers} workers, {elapsed:.1f} s: {flows / elapsed:.0f} flows/s ({requests / elapsed:.0f} req/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
