"""Errors raised by tinker_actors.

The hierarchy is flat on purpose: catch the family you can act on.

    TinkerActorsError
     +-- ValidationError           bad input, caught before anything was sent (also a ValueError)
     +-- ConfigError               missing or malformed configuration (also a ValueError)
     +-- APIConnectionError        no HTTP answer: refused, reset, dropped mid-body
     |    +-- APITimeoutError      connect or read timeout
     +-- APIStatusError            the server answered with a status we do not accept
     |    +-- BadRequestError        400
     |    +-- AuthenticationError    401
     |    +-- PermissionDeniedError  403
     |    +-- NotFoundError          404
     |    +-- ConflictError          409
     |    +-- GoneError              410 (an expired future or session)
     |    +-- UnprocessableError     422
     |    +-- RateLimitError         429, with .retry_after (seconds or None)
     |    +-- InternalServerError    5xx
     +-- ResponseDecodeError       the server answered 2xx with a body we cannot read
     +-- RequestFailedError        a future resolved to an error; .category is user/server/unknown
     +-- FutureTimeoutError        a future made no progress before its deadline
     +-- TrainingOrderError        a training request failed after taking its seq_id: the model's order is lost
     +-- SessionExpiredError       the session is gone (410 on heartbeat, or closed)
     +-- ServiceClosedError        the runtime is shutting down or has shut down
     +-- ActorCrashedError         an actor failed more often than its supervisor allows

Every error names where it happened (``endpoint``, e.g. ``POST /api/v1/asample``)
when it came from a request. No error ever carries the API key: messages are
built from the endpoint, status and server text only, and server text is passed
through :func:`redact` before it is stored.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "TinkerActorsError",
    "ValidationError",
    "ConfigError",
    "APIConnectionError",
    "APITimeoutError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "GoneError",
    "UnprocessableError",
    "RateLimitError",
    "InternalServerError",
    "ResponseDecodeError",
    "RequestFailedError",
    "FutureTimeoutError",
    "TrainingOrderError",
    "SessionExpiredError",
    "ServiceClosedError",
    "ActorCrashedError",
    "status_error",
    "redact",
    "excerpt",
    "gave_up",
]

# Tinker API keys start with "tml-"; JWTs with "eyJ". Anything that looks like
# either is masked wherever text from outside ends up in an error or a log line.
_SECRET_RE = re.compile(r"(tml-[A-Za-z0-9_\-]{2,}|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-.]+)")


def redact(text: str, *secrets: str | None) -> str:
    """Mask API keys and JWTs in ``text``, plus any explicit ``secrets``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _SECRET_RE.sub("***", text)


class TinkerActorsError(Exception):
    """Base of every error this package raises on purpose.

    ``attempts``: how many times the call was tried before this error ended
    it (1 unless a retry budget ran out; see :func:`gave_up`).
    """

    attempts: int = 1


def gave_up(error: TinkerActorsError, *, attempts: int, elapsed: float, budget: float | None) -> TinkerActorsError:
    """Mark ``error`` as the last of ``attempts`` tries: the message says so, ``.attempts`` counts them."""
    error.attempts = attempts
    limit = f"; retry budget {budget:g} s" if budget is not None else ""
    message = str(error.args[0]) if error.args else type(error).__name__
    error.args = (f"{message} (gave up after {attempts} attempts in {elapsed:.1f} s{limit})", *error.args[1:])
    return error


class ValidationError(TinkerActorsError, ValueError):
    """Bad input, found before anything was sent.

    ``field`` names the offending argument or path in the request (for example
    ``data[3].loss_fn_inputs.weights``) when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class ConfigError(TinkerActorsError, ValueError):
    """Missing or malformed configuration (API key, base URL, limits)."""


class APIConnectionError(TinkerActorsError):
    """The request got no HTTP answer (refused, reset, dropped mid-body)."""

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        super().__init__(f"{endpoint}: {message}" if endpoint else message)


class APITimeoutError(APIConnectionError):
    """Connect or read timeout."""


class APIStatusError(TinkerActorsError):
    """The server answered with a status the caller does not accept."""

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        endpoint: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.endpoint = endpoint
        self.body = body
        self.headers = dict(headers or {})
        self.request_id = request_id
        where = f"{endpoint}: " if endpoint else ""
        super().__init__(f"{where}HTTP {status_code}: {redact(message)}")


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class GoneError(APIStatusError):
    """410: the future or session expired on the server."""


class UnprocessableError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    """429. ``retry_after`` is the server's hint in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class InternalServerError(APIStatusError):
    pass


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: UnprocessableError,
    429: RateLimitError,
}


def status_error(status_code: int) -> type[APIStatusError]:
    """The error class for an HTTP status."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status_code, APIStatusError)


_EXCERPT_BYTES = 120


def excerpt(data: bytes | bytearray | memoryview | None, limit: int = _EXCERPT_BYTES) -> str:
    """The first ``limit`` bytes of an answer, safe to print: keys masked, control bytes escaped."""
    if not data:
        return "(empty body)"
    # latin-1 maps bytes 1:1, so keys are masked without decoding anything else;
    # the bytes repr then escapes control and non-ASCII bytes (\r, \x00, \xff)
    head = redact(bytes(data[:limit]).decode("latin-1")).encode("latin-1")
    text = repr(head)
    more = len(data) - limit
    return f"{text} (+{more} more bytes)" if more > 0 else text


class ResponseDecodeError(TinkerActorsError):
    """An answer whose body is not what the endpoint promises (HTML, bad JSON, garbage protobuf, cut short).

    ``endpoint`` (method and path), ``status`` and ``content_type`` say where
    and what; the message quotes the first bytes of the body (``body_start``,
    keys masked, at most 120 bytes).
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        content_type: str | None = None,
        status: int | None = None,
        body: bytes | bytearray | memoryview | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.content_type = content_type
        self.status = status
        self.body_start = excerpt(body) if body is not None else None
        where = f"{endpoint}: " if endpoint else ""
        code = f"HTTP {status} " if status is not None else ""
        quoted = f"; body starts {self.body_start}" if self.body_start is not None else ""
        super().__init__(
            f"{where}{code}malformed response ({content_type or 'no content type'}): {redact(message)[:500]}{quoted}"
        )


class RequestFailedError(TinkerActorsError):
    """A future resolved to an error. ``category`` is ``user``, ``server`` or ``unknown``."""

    def __init__(self, message: str, *, category: str = "unknown", request_id: str | None = None) -> None:
        self.category = category
        self.request_id = request_id
        rid = f" [{request_id}]" if request_id else ""
        super().__init__(f"request failed ({category}){rid}: {redact(message)}")


class FutureTimeoutError(TinkerActorsError, TimeoutError):
    """A future made no progress before its deadline."""

    def __init__(self, message: str, *, request_id: str | None = None, queue_state: str | None = None) -> None:
        self.request_id = request_id
        self.queue_state = queue_state
        super().__init__(message)


class TrainingOrderError(TinkerActorsError):
    """A training request failed for good after it took its place (seq_id) in the model's order.

    The server may be waiting for that seq_id, so no later request of this
    TrainingClient can run in order: each one fails at once with this error.
    ``operation`` and ``seq_id`` name the lost request, ``cause`` its error.
    """

    def __init__(self, *, model_id: str, operation: str, seq_id: int, cause: BaseException) -> None:
        self.model_id = model_id
        self.operation = operation
        self.seq_id = seq_id
        self.cause = cause
        super().__init__(
            f"TrainingClient for model {model_id!r} can send no more requests: {operation} (seq_id {seq_id}) "
            f"failed after taking its place in the model's order ({type(cause).__name__}: {redact(str(cause))[:300]}). "
            "The server may be waiting for that seq_id. To continue, restore your last checkpoint into a new "
            "TrainingClient: ServiceClient.create_training_client_from_state_with_optimizer(path) "
            "(and redo the steps after it)"
        )
        self.__cause__ = cause


class SessionExpiredError(TinkerActorsError):
    """The session ended on the server (410) or was closed; pending work cannot finish."""


class ServiceClosedError(TinkerActorsError):
    """The runtime is closing or closed; no new work is accepted."""


class ActorCrashedError(TinkerActorsError):
    """An actor crashed more often than its supervisor's restart budget allows."""

    def __init__(self, message: str, *, actor: str) -> None:
        self.actor = actor
        super().__init__(f"actor {actor!r}: {message}")
