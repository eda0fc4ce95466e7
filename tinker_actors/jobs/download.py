"""Download a checkpoint archive and verify it before anything is unpacked.

The archive comes from a signed URL (``RestClient.get_checkpoint_archive_url_from_tinker_path``).
It is streamed to ``<dest>.part``, its size is checked against
``Content-Length``, its SHA-256 is computed on the way (and compared with a
digest the server sends in ``X-Checksum-Sha256`` or ``Digest``, when it sends
one), every member is read back through ``tarfile`` (which checks gzip CRCs
and member sizes), and only then is it renamed into place and, if asked,
extracted with the ``data`` filter (no absolute paths, no ``..``, no
devices). A failed download leaves no file under the final name.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tarfile
from collections.abc import Callable
from pathlib import Path


import httpx
import msgspec

from tinker_actors.errors import APIConnectionError, ResponseDecodeError, status_error

__all__ = ["DownloadResult", "download_archive", "verify_archive"]

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


class DownloadResult(msgspec.Struct, kw_only=True):
    path: str
    bytes: int
    sha256: str
    members: int
    extracted_to: str | None = None


def _expected_digest(headers: httpx.Headers) -> str | None:
    value = headers.get("x-checksum-sha256")
    if value:
        return value.strip().lower()
    digest = headers.get("digest") or ""
    for part in digest.split(","):
        name, _, encoded = part.strip().partition("=")
        if name.lower() == "sha-256" and encoded:
            return base64.b64decode(encoded).hex()
    return None


def verify_archive(path: str | Path) -> int:
    """Read every member of the tar at ``path``; the number of files. Raises ResponseDecodeError."""
    try:
        with tarfile.open(path, mode="r:*") as tar:
            files = 0
            for member in tar:
                if member.isfile():
                    fh = tar.extractfile(member)
                    assert fh is not None
                    while fh.read(1 << 20):
                        pass
                    files += 1
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ResponseDecodeError(f"checkpoint archive is corrupt: {exc}", content_type="application/x-tar") from None
    return files


async def download_archive(
    url: str,
    dest: str | Path,
    *,
    extract_to: str | Path | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> DownloadResult:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    sha = hashlib.sha256()
    received = 0
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as http:
            async with http.stream("GET", url) as response:
                if response.status_code >= 400:
                    text = b""
                    async for chunk in response.aiter_bytes():  # an error page: its start is enough
                        text += chunk
                        if len(text) >= 4096:
                            break
                    cls = status_error(response.status_code)
                    raise cls(text[:500].decode("utf-8", "replace"), status_code=response.status_code,
                              endpoint="GET <archive url>")
                total = int(response.headers["content-length"]) if "content-length" in response.headers else None
                expected = _expected_digest(response.headers)
                with open(part, "wb") as fh:
                    async for chunk in response.aiter_bytes(1 << 16):
                        fh.write(chunk)
                        sha.update(chunk)
                        received += len(chunk)
                        if progress is not None:
                            progress(received, total)
                    fh.flush()
                    os.fsync(fh.fileno())
        if total is not None and received != total:
            raise ResponseDecodeError(f"archive truncated: got {received} of {total} bytes")
        digest = sha.hexdigest()
        if expected is not None and expected != digest:
            raise ResponseDecodeError(f"archive checksum mismatch: expected {expected}, got {digest}")
        members = verify_archive(part)
        os.replace(part, dest)
    except httpx.TransportError as exc:
        part.unlink(missing_ok=True)
        raise APIConnectionError(f"archive download failed: {exc}", endpoint="GET <archive url>") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    extracted = None
    if extract_to is not None:
        target = Path(extract_to)
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(dest, mode="r:*") as tar:
            tar.extractall(target, filter="data")
        extracted = str(target.resolve())
    return DownloadResult(path=str(dest.resolve()), bytes=received, sha256=sha.hexdigest(), members=members, extracted_to=extracted)


