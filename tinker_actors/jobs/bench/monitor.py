"""Counters read once a second during a trial: the server's (when it has them) and the client's retries.

The local server answers ``GET /_local/stats`` with cumulative HTTP statuses
(429s, 5xx), requests seen, work done by type and the long polls open right
now. A server without that route (the real service) answers 404 on the first
read and is not asked again; the client's own retry count (the runtime's
per-pool statistics) is read either way. The report joins both to the
timeline: 429 markers, server queue depth, retries.
"""

from __future__ import annotations

from typing import Any

import httpx
import trio

from .results import ServerSample

__all__ = ["Monitor", "client_retries"]


def client_retries(service: Any) -> int | None:
    """The runtime's transport retries so far, all pools; None for a client without statistics."""
    runtime = getattr(service, "service", None)
    stats = getattr(runtime, "statistics", None)
    if not callable(stats):
        return None
    try:
        return sum(int(p.retries) for p in stats().pools.values())
    except Exception:  # noqa: BLE001 - statistics are a nicety; a runtime without them still benches
        return None


async def _read(http: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    try:
        r = await http.get(url)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    try:
        data = r.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _sample(t: float, data: dict[str, Any] | None, retries: int | None) -> ServerSample:
    if data is None:
        return ServerSample(t=t, client_retries=retries)
    reqs = data.get("requests")
    return ServerSample(
        t=t,
        statuses={str(k): int(v) for k, v in (data.get("statuses") or {}).items()},
        open_long_polls=data.get("open_long_polls"),
        work_done={str(k): int(v) for k, v in (data.get("work_done") or {}).items()},
        requests=sum(int(v) for v in reqs.values()) if isinstance(reqs, dict) else None,
        client_retries=retries,
    )


class Monitor:
    """``async with Monitor(...) as m:`` then ``nursery.start_soon(m.run, samples, t0)``.

    The HTTP client is made on entry, before the trial's clock starts: building
    one (TLS context, certificates) takes tens of milliseconds that would
    otherwise delay the first sends.
    """

    def __init__(self, *, stats_url: str | None, api_key: str | None, service: Any = None,
                 interval: float = 1.0, progress: Any = None) -> None:
        self.url = stats_url
        self.service = service
        self.interval = interval
        self.progress = progress
        self.active = stats_url is not None or client_retries(service) is not None
        self._headers = {"x-api-key": api_key} if api_key else {}
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Monitor:
        if self.url is not None:
            self._http = httpx.AsyncClient(timeout=5.0, headers=self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def run(self, samples: list[ServerSample], t0: float) -> None:
        """Append a :class:`ServerSample` every ``interval`` seconds until cancelled.

        ``progress`` (a ProgressCounters) gets the client's retries since the start.
        """
        if not self.active:
            return
        base = self.progress.retries if self.progress is not None else 0
        url = self.url
        while True:
            data = await _read(self._http, url) if url and self._http is not None else None
            if url and data is None and not samples:
                url = None  # no counters here (not the local server): stop asking
            retries = client_retries(self.service)
            samples.append(_sample(trio.current_time() - t0, data, retries))
            if self.progress is not None and retries is not None:
                self.progress.retries = base + retries - (samples[0].client_retries or 0)
            await trio.sleep(self.interval)
