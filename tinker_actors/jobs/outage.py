"""Is the server reachable? The sweep's view, and its one-probe-at-a-time gate.

A long job must tell an outage (nothing gets through: refused connections,
timeouts, gateway errors, heartbeats failing) from a request that fails on
its own while the rest of the sweep succeeds. Only the second kind counts
against a request's retry budget; an outage only counts against the sweep's
``give_up_after``.

:class:`OutageTracker` is the pure state (time is an argument, as in
``aimd``): it hears of successes and of failures that say "unreachable", and
reads the session's heartbeat health. The server is unreachable since ``T``
when, since ``T``, nothing succeeded and either the heartbeat has been failing,
or requests failed to reach it and either ``burst`` of them failed in a row
or nothing succeeded for ``quiet_s``. (Under a few per cent of dropped
connections successes come in between, so that is no outage.)

While the server is unreachable, requests do not all hammer it: the tracker
hands out one *probe* at a time, spaced by a backoff that doubles from
``probe_initial`` to ``probe_max`` (10 s, the transport's own cap on one
back-off: a server that comes back is found within about 10 s, by a probe
or by the next heartbeat); everyone else waits until the probe (or a
heartbeat, or a request already in flight) gets through.
"""

from __future__ import annotations

import math
import random

__all__ = ["OutageTracker"]


class OutageTracker:
    def __init__(
        self,
        *,
        quiet_s: float = 5.0,
        burst: int = 3,
        probe_initial: float = 1.0,
        probe_max: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.quiet_s = quiet_s
        self.burst = burst
        self.probe_initial = probe_initial
        self.probe_max = probe_max
        self._rng = rng or random.Random()
        self.last_success: float | None = None
        self.fail_since: float | None = None  # first "unreachable" failure since the last success
        self.failures = 0  # "unreachable" failures since the last success
        self.probing = False
        self.next_try: float | None = None
        self._delay = probe_initial
        self.outages = 0  # outages seen (entered), for the summary
        self.longest = 0.0
        self._in_outage_since: float | None = None

    # -- what happened ----------------------------------------------------------

    def success(self, now: float) -> None:
        if self._in_outage_since is not None:
            self.longest = max(self.longest, now - self._in_outage_since)
            self._in_outage_since = None
        self.last_success = now
        self.fail_since = None
        self.failures = 0
        self.probing = False
        self.next_try = None
        self._delay = self.probe_initial

    def unreachable_failure(self, now: float) -> None:
        """A request (or opening a session) failed without reaching the server."""
        if self.fail_since is None:
            self.fail_since = now
        self.failures += 1

    # -- the verdict --------------------------------------------------------------

    def unreachable_since(self, now: float, heartbeat_failing_since: float | None = None) -> float | None:
        """When the current outage began, or None when the server is reachable.

        ``heartbeat_failing_since``: when the session's heartbeats started
        failing (None while they succeed). A success of our own after that
        point wins: the server answered us since.
        """
        since: list[float] = []
        if heartbeat_failing_since is not None and (
            self.last_success is None or self.last_success < heartbeat_failing_since
        ):
            since.append(heartbeat_failing_since)
        if self.fail_since is not None and (
            self.failures >= self.burst
            or now - (self.last_success if self.last_success is not None else -math.inf) >= self.quiet_s
        ):
            since.append(self.fail_since)
        start = min(since) if since else None
        self._note(now, start)
        return start

    def _note(self, now: float, start: float | None) -> None:
        if start is None:
            self._in_outage_since = None  # ended by a success (which measured it)
            return
        if self._in_outage_since is None:
            self.outages += 1
            self._in_outage_since = start
        self.longest = max(self.longest, now - self._in_outage_since)

    # -- probing --------------------------------------------------------------------

    def may_probe(self, now: float) -> bool:
        """True when the caller may send one request now (it then owns the probe)."""
        if self.probing:
            return False
        if self.next_try is None:
            self.next_try = now + self._jittered()
        if now < self.next_try:
            return False
        self.probing = True
        return True

    def probe_failed(self, now: float) -> None:
        self.probing = False
        self._delay = min(self.probe_max, self._delay * 2)
        self.next_try = now + self._jittered()

    def probe_abandoned(self) -> None:
        """The probe ended without an answer either way (e.g. cancelled)."""
        self.probing = False

    def _jittered(self) -> float:
        return self._delay * self._rng.uniform(0.8, 1.2)
