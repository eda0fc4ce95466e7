"""The official SDK's exception names and hierarchy, and the translation from ours.

::

    TinkerError
     +-- APIError                      .message, .request, .body
     |    +-- APIResponseValidationError   a 2xx body that does not decode
     |    +-- APIStatusError               .status_code, .response
     |    |    +-- BadRequestError 400, AuthenticationError 401, BillingError 402,
     |    |    |   PermissionDeniedError 403, NotFoundError 404, ConflictError 409,
     |    |    |   UnprocessableEntityError 422, RateLimitError 429, InternalServerError 5xx
     |    +-- APIConnectionError
     |         +-- APITimeoutError
     +-- RequestFailedError            a future that ended in error: .request_id, .category

The runtime raises :mod:`tinker_actors.errors`; :func:`translate` turns each
into the class an SDK program catches, with the original as ``__cause__``
(so nothing is lost). Errors that have no SDK counterpart (bad input caught
before sending: ``ValueError``/``TypeError``; a closed client: ``RuntimeError``;
a future's own deadline: ``TimeoutError``) stay what they are, which is what
the SDK raises in those cases too.
"""

from __future__ import annotations

from typing import Any

import httpx

from .. import errors as ours

__all__ = [
    "TinkerError", "APIError", "APIResponseValidationError", "APIStatusError", "APIConnectionError",
    "APITimeoutError", "BadRequestError", "AuthenticationError", "BillingError", "PermissionDeniedError",
    "NotFoundError", "ConflictError", "UnprocessableEntityError", "RateLimitError", "InternalServerError",
    "RequestFailedError", "translate",
]


class TinkerError(Exception):
    """Base of every error a Tinker client raises on purpose."""


class APIError(TinkerError):
    """An HTTP exchange went wrong; ``request`` is the request, ``body`` the decoded answer if any."""

    def __init__(self, message: str, request: httpx.Request, *, body: object | None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body


class APIResponseValidationError(APIError):
    """A 2xx answer whose body is not what the endpoint promises."""

    def __init__(self, response: httpx.Response, body: object | None, message: str | None = None) -> None:
        super().__init__(message or "the API answered with data that does not fit the expected schema",
                         response.request, body=body)
        self.response = response
        self.status_code = response.status_code

    def __reduce__(self) -> Any:
        return (type(self), (self.response, self.body, self.message))


class APIStatusError(APIError):
    """The server answered 4xx or 5xx."""

    def __init__(self, message: str, response: httpx.Response, body: object | None) -> None:
        super().__init__(message, response.request, body=body)
        self.response = response
        self.status_code = response.status_code

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.response, self.body))


class APIConnectionError(APIError):
    """No HTTP answer: refused, reset, dropped."""

    def __init__(self, request: httpx.Request, message: str = "Connection error.") -> None:
        super().__init__(message, request, body=None)

    def __reduce__(self) -> Any:
        return (type(self), (self.request, self.message))


class APITimeoutError(APIConnectionError):
    """The request timed out."""

    def __init__(self, request: httpx.Request) -> None:
        super().__init__(request, "Request timed out.")

    def __reduce__(self) -> Any:
        return (type(self), (self.request,))


class BadRequestError(APIStatusError):
    status_code = 400


class AuthenticationError(APIStatusError):
    status_code = 401


class BillingError(APIStatusError):
    status_code = 402


class PermissionDeniedError(APIStatusError):
    status_code = 403


class NotFoundError(APIStatusError):
    status_code = 404


class ConflictError(APIStatusError):
    status_code = 409


class UnprocessableEntityError(APIStatusError):
    status_code = 422


class RateLimitError(APIStatusError):
    status_code = 429


class InternalServerError(APIStatusError):
    pass


class RequestFailedError(TinkerError):
    """An operation's server future ended in error; ``category`` says whose fault (user/server/unknown)."""

    def __init__(self, message: str, request_id: str, category: Any) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.category = category

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.request_id, self.category))


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError, 401: AuthenticationError, 402: BillingError, 403: PermissionDeniedError,
    404: NotFoundError, 409: ConflictError, 422: UnprocessableEntityError, 429: RateLimitError,
}


def _request(endpoint: str | None, base_url: str | None) -> httpx.Request:
    method, _, path = (endpoint or "GET /").partition(" ")
    base = (base_url or "http://localhost").rstrip("/")
    try:
        return httpx.Request(method or "GET", base + (path or "/"))
    except Exception:  # a malformed base URL must not hide the real error
        return httpx.Request("GET", "http://localhost/")


def translate(exc: BaseException, base_url: str | None = None) -> BaseException:
    """The SDK-named error for one of ours (``exc`` itself when there is none)."""
    if isinstance(exc, TinkerError):
        return exc
    new: BaseException
    if isinstance(exc, ours.APIStatusError):
        request = _request(exc.endpoint, base_url)
        body = exc.body
        content = body if isinstance(body, bytes) else (str(body).encode() if body is not None else b"")
        response = httpx.Response(exc.status_code, headers=exc.headers, content=content, request=request)
        cls = _BY_STATUS.get(exc.status_code) or (InternalServerError if exc.status_code >= 500 else APIStatusError)
        new = cls(str(exc), response, body)
    elif isinstance(exc, ours.APITimeoutError):
        new = APITimeoutError(_request(exc.endpoint, base_url))
    elif isinstance(exc, ours.APIConnectionError):
        new = APIConnectionError(_request(exc.endpoint, base_url), str(exc))
    elif isinstance(exc, ours.ResponseDecodeError):
        request = _request(exc.endpoint, base_url)
        new = APIResponseValidationError(httpx.Response(200, request=request), None, str(exc))
    elif isinstance(exc, ours.RequestFailedError):
        from .types import RequestErrorCategory

        try:
            category: Any = RequestErrorCategory(exc.category)
        except ValueError:
            category = RequestErrorCategory.Unknown
        new = RequestFailedError(str(exc), exc.request_id or "", category)
    elif isinstance(exc, (ours.ServiceClosedError, ours.SessionExpiredError)):
        new = RuntimeError(str(exc))
    else:
        return exc
    new.__cause__ = exc
    return new
