"""The headers every request carries, built once per transport.

The service reads the same platform headers the official SDK sends (it logs
and gates on them), so we send them too, naming our own package and runtime.
"""

from __future__ import annotations

import functools
import platform
import sys

from .._version import __version__
from ..errors import ConfigError

__all__ = ["platform_headers", "base_headers", "check_api_key", "ACCEPT_ENCODING"]

# httpx decodes all three; zstd through the `zstandard` package, a dependency.
ACCEPT_ENCODING = "gzip, deflate, zstd"


def check_api_key(api_key: str) -> None:
    """Refuse a key that cannot be sent as a header value, before any I/O.

    A trailing newline or space (a key pasted from a file) would otherwise be
    rejected by the HTTP library on every attempt and look like an
    unreachable server. The message says where the bad character is, never
    the key.
    """
    if not isinstance(api_key, str) or not api_key:
        raise ConfigError("an API key is required")
    for i, char in enumerate(api_key):
        if not "!" <= char <= "~":  # visible ASCII only: no space, tab, CR, LF, NUL, DEL or non-ASCII
            what = "whitespace" if char.isspace() else ("a non-ASCII character" if ord(char) > 127 else "a control character")
            raise ConfigError(
                f"the API key contains {what} ({char!r}) at position {i} of {len(api_key)}; "
                "remove it (a key read from a file often ends with a newline)"
            )


def _os_name() -> str:
    system = platform.system().lower()
    return {"darwin": "MacOS", "linux": "Linux", "windows": "Windows", "freebsd": "FreeBSD"}.get(
        system, f"Other:{system}" if system else "Unknown"
    )


def _arch() -> str:
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    if machine in ("x86_64", "amd64"):
        return "x64"
    if machine == "arm":
        return "arm"
    if sys.maxsize <= 2**32:
        return "x32"
    return f"other:{machine}" if machine else "unknown"


@functools.cache
def platform_headers() -> dict[str, str]:
    """``X-Stainless-*`` platform headers, computed once per process."""
    return {
        "X-Stainless-Lang": "python",
        "X-Stainless-Package-Version": __version__,
        "X-Stainless-OS": _os_name(),
        "X-Stainless-Arch": _arch(),
        "X-Stainless-Runtime": platform.python_implementation(),
        "X-Stainless-Runtime-Version": platform.python_version(),
        "X-Stainless-Async": "async:trio",
    }


def user_agent() -> str:
    return (
        f"tinker_actors/{__version__} "
        f"(Python {platform.python_version()}; {_os_name()} {_arch()})"
    )


def base_headers(api_key: str, default_headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers shared by every call of one transport; ``default_headers`` win."""
    headers = {
        "X-API-Key": api_key,
        "User-Agent": user_agent(),
        "Accept-Encoding": ACCEPT_ENCODING,
        **platform_headers(),
    }
    if default_headers:
        headers.update(default_headers)
    return headers
