"""Download an external checkpoint's files, decrypting the age-encrypted ones.

``TrainingClient.save_weights_external(name, age_encryption_recipients=[...])``
stores each file as ``<file>.age``, encrypted to those recipients. ::

    paths = await download_external_weights(rest, tinker_path, "./weights", identities=[my_age_identity])

fetches every file through the signed URLs of
``RestClient.get_external_weights_urls``; with ``identities`` (``AGE-SECRET-KEY-1...``
strings or pyrage identities) each ``.age`` file is decrypted and written
without the suffix. A file is written to ``<name>.part`` and renamed into
place only once complete (and decrypted), so a failed download leaves no file
under a final name. Decrypting needs the ``age`` extra (pyrage).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from ..errors import ConfigError, status_error

__all__ = ["download_external_weights", "decrypt_age"]


def _identities(identities: Sequence[Any]) -> list[Any]:
    try:
        import pyrage
    except ImportError:
        raise ConfigError("decrypting age-encrypted weights needs pyrage (pip install 'tinker_actors[age]')") from None
    out = []
    for ident in identities:
        if isinstance(ident, str):
            ident = pyrage.x25519.Identity.from_str(ident.strip())
        out.append(ident)
    return out


def decrypt_age(data: bytes, identities: Sequence[Any]) -> bytes:
    """``data`` decrypted with the first identity that fits; pyrage.DecryptError when none does."""
    import pyrage

    return bytes(pyrage.decrypt(data, _identities(identities)))


async def download_external_weights(
    rest: Any, tinker_path: str, dest: str | os.PathLike[str], *, identities: Sequence[Any] | None = None,
    http: httpx.AsyncClient | None = None,
) -> list[Path]:
    """Every file of the external checkpoint ``tinker_path`` into ``dest``; the paths written."""
    idents = _identities(identities) if identities else None
    urls = (await rest.get_external_weights_urls(tinker_path)).urls
    out_dir = Path(dest)
    out_dir.mkdir(parents=True, exist_ok=True)
    own = http is None
    client = http or httpx.AsyncClient(timeout=60.0)
    written: list[Path] = []
    try:
        for name, url in sorted(urls.items()):
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"refusing a file name that leaves the destination: {name!r}")
            response = await client.get(url)
            if response.status_code != 200:
                raise status_error(response.status_code)(
                    f"downloading {name}", status_code=response.status_code, endpoint=f"GET {name}")
            data = response.content
            final = name
            if name.endswith(".age") and idents is not None:
                data = decrypt_age(data, idents)
                final = name[: -len(".age")]
            part = out_dir / (final + ".part")
            part.write_bytes(data)
            part.replace(out_dir / final)
            written.append(out_dir / final)
    finally:
        if own:
            await client.aclose()
    return written
