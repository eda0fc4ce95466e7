"""The headers every request carries, built once per transport.

The service reads the same platform headers the official SDK sends (it logs
and gates on them), so we send them too, naming our own package and runtime.
"""

from __future__ import annotations

import functools
import platform
import sys

from .._version import __version__

__all__ = ["platform_headers", "base_headers", "ACCEPT_ENCODING"]

# httpx decodes all three; zstd through the `zstandard` package, a dependency.
ACCEPT_ENCODING = "gzip, deflate, zstd"


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
