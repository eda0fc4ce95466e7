"""A decompression bomb against a real ``serve`` process: refused with 413 while
the process's peak RSS stays within the inflated cap plus a margin.

The old server inflated a 2 MiB gzip body whole, on the event loop: RSS went
from 64 MiB to 4.1 GiB and healthz stalled for 12 s.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zlib
from pathlib import Path

import httpx
import zstandard

MiB = 1024 * 1024
# the default inflated cap (= max_body_bytes, 64 MiB) plus the compressed body
# and the interpreter's own slack; measured growth is about 70 MiB
RSS_GROWTH_BOUND = 128 * MiB


def _vm_hwm(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


def _bomb(encoding: str, inflated: int) -> bytes:
    """Members (gzip) or frames (zstd) of 64 MiB of zeros, back to back: both
    formats allow it, and it builds a 2 GiB bomb in a fraction of a second."""
    zeros = b"\0" * (64 * MiB)
    if encoding == "gzip":
        c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        member = c.compress(zeros) + c.flush()
    else:
        member = zstandard.ZstdCompressor(level=3).compress(zeros)
    return member * (inflated // len(zeros))


def _start(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinker_actors.server", "serve", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "tinker-actors local server on http://127.0.0.1:PORT"
    match = re.search(r"http://\S+", line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
    return proc, match.group(0)


def test_decompression_bombs_are_refused_within_a_bounded_peak_rss(tmp_path: Path) -> None:
    bombs = {encoding: _bomb(encoding, 2048 * MiB) for encoding in ("gzip", "zstd")}
    assert len(bombs["gzip"]) < 3 * MiB  # 2 MiB that inflate to 2 GiB
    proc, url = _start(tmp_path / "data")
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": "tml-x"}, timeout=120) as client:
            body = {"tags": [], "sdk_version": "t"}
            assert client.post("/api/v1/create_session", json=body).status_code == 200
            baseline = _vm_hwm(proc.pid)
            for encoding, bomb in bombs.items():
                r = client.post("/api/v1/create_session", content=bomb, headers={"content-encoding": encoding})
                assert r.status_code == 413, (encoding, r.text)
                assert "inflates past" in r.json()["detail"]
            peak = _vm_hwm(proc.pid)
            assert client.get("/api/v1/healthz").status_code == 200
            assert client.post("/api/v1/create_session", json=body).status_code == 200
        growth = peak - baseline
        print(f"RSS baseline {baseline / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB, growth {growth / MiB:.0f} MiB")
        assert growth < RSS_GROWTH_BOUND, f"peak RSS grew by {growth / MiB:.0f} MiB refusing the bombs"
        assert proc.poll() is None  # still serving
    finally:
        proc.terminate()
        proc.wait(timeout=30)
