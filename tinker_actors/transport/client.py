"""``Transport``: builds each request, sends it through its resource's pool, and
owns the one retry loop of the whole client.

A logical call gets one idempotency key, kept across every retry, and ends as a
decoded value, a :class:`RawResponse`, a :class:`SignedURL` or a typed error
from :mod:`tinker_actors.errors`. The API key lives only in the header dict
sent on the wire: reprs, errors and log lines never see it.
"""

from __future__ import annotations

import contextlib
import random as _random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import msgspec
import trio
import zstandard  # compresses bodies; also what httpx's decoders need for zstd answers

from .._log import get_logger
from ..errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigError,
    ResponseDecodeError,
    TinkerActorsError,
    ValidationError,
    gave_up,
    redact,
)
from .headers import base_headers, check_api_key
from .limits import PoolLimits, ResourceType
from .options import DEFAULT_OPTIONS, IdempotencyKey, RawResponse, RequestOptions
from .pool import Pool, ResponseTooLarge, tls_context
from .responses import decode_body, signed_url_from, status_error_from
from .retry import RetryPolicy, is_proxy_rejection, next_delay, should_retry
from .stats import PoolStatistics

__all__ = ["Transport", "DEFAULT_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_RESPONSE_DEADLINE", "DEFAULT_MAX_RESPONSE_BYTES"]

log = get_logger(__name__)

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
# Bodies are read into memory whole: anything bigger is refused (RequestOptions.max_response_bytes).
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
# One attempt, from sending to the last body byte; never less than connect + read timeout.
DEFAULT_RESPONSE_DEADLINE = 180.0
API_PREFIX = "/api/v1/"
_JSON = "application/json"
_KEYLESS_METHODS = frozenset({"GET", "HEAD"})
_encoder = msgspec.json.Encoder()
_URL_CACHE_SIZE = 256  # paths with ids in them (checkpoints, sessions) must not grow it without bound


class Transport:
    """HTTP for one base URL and key: one :class:`Pool` per :class:`ResourceType`.

    ``async with Transport(base_url, api_key) as transport:`` opens every pool
    and closes them on exit. ``verify=False`` turns TLS verification off for
    an https base URL, and says so in a warning log line.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        limits: PoolLimits | None = None,
        retry: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        verify: bool = True,
        http_transport: httpx.AsyncBaseTransport | None = None,
        random: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        response_deadline: float = DEFAULT_RESPONSE_DEADLINE,
    ) -> None:
        check_api_key(api_key)
        url = httpx.URL(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"base_url must be an http(s) URL, got {redact(base_url, api_key)!r}")
        self.base_url = str(url).rstrip("/")
        self.limits = limits or PoolLimits()
        self.retry_policy = retry or RetryPolicy()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.verify = verify
        self.max_response_bytes = max_response_bytes
        if not response_deadline > 0:
            raise ConfigError(f"response_deadline must be positive, got {response_deadline}")
        self.response_deadline = response_deadline
        self._api_key = api_key
        self._secrets = (api_key,)
        self._headers = base_headers(api_key, dict(default_headers or {}))
        self._http_transport = http_transport
        self._random = random or _random.Random().random
        self._wall_clock = wall_clock
        self._pools: dict[ResourceType, Pool] = {}
        # Parsed URLs by path: parsing one costs as much as a tenth of a request.
        self._urls: dict[str, httpx.URL] = {}
        self._stack: contextlib.AsyncExitStack | None = None

    def __repr__(self) -> str:
        state = "open" if self._stack is not None else "closed"
        return f"<Transport {self.base_url} ({state}, {len(self._pools)} pools)>"

    async def __aenter__(self) -> Transport:
        if self._stack is not None:
            raise RuntimeError("Transport is already open")
        if not self.verify and self.base_url.startswith("https:"):
            log.warning("transport.tls_verification_disabled", base_url=self.base_url)
        tls = tls_context(self.verify)
        async with contextlib.AsyncExitStack() as stack:
            for resource in ResourceType:
                pool = Pool(
                    resource,
                    self.limits.connections(resource),
                    shard_size=self.limits.shard_size,
                    verify=tls,
                    keepalive_expiry=self.limits.keepalive_expiry,
                    http_transport=self._http_transport,
                )
                pool.set_proxy_budget(self.retry_policy.proxy_rejection_budget)
                self._pools[resource] = await stack.enter_async_context(pool)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._pools.clear()

    def replace_api_key(self, api_key: str) -> None:
        """Send ``api_key`` on calls started from now on (JWT mode swaps the credential)."""
        check_api_key(api_key)
        self._api_key = api_key
        self._secrets = (*self._secrets, api_key)
        self._headers["X-API-Key"] = api_key

    def pool(self, resource: ResourceType | str) -> Pool:
        try:
            return self._pools[ResourceType(resource)]
        except KeyError:
            raise RuntimeError("Transport is not open") from None

    def statistics(self) -> dict[str, PoolStatistics]:
        """A frozen snapshot per pool, keyed by resource type name."""
        return {resource.value: pool.statistics() for resource, pool in self._pools.items()}

    # -- building ---------------------------------------------------------

    def _body(self, json: Any, content: bytes | None, options: RequestOptions) -> bytes | None:
        if json is not None and content is not None:
            raise ValidationError("pass json or content, not both")
        if content is not None:
            if options.extra_body:
                raise ValidationError("extra_body applies to JSON bodies only", field="extra_body")
            return content
        if json is None and not options.extra_body:
            return None
        if not options.extra_body:
            return json if isinstance(json, bytes) else _encoder.encode(json)
        base: Any = {} if json is None else msgspec.json.decode(
            json if isinstance(json, bytes) else _encoder.encode(json)
        )
        if not isinstance(base, dict):
            raise ValidationError("extra_body needs a JSON object body", field="extra_body")
        base.update(options.extra_body)
        return _encoder.encode(base)

    def _idempotency_key(self, method: str, options: RequestOptions) -> str | None:
        if method in _KEYLESS_METHODS:
            return None
        key = options.idempotency_key
        if key is IdempotencyKey.OMIT:
            return None
        if key is IdempotencyKey.AUTO:
            return f"tinker-actors-{uuid.uuid4()}"
        return key

    # -- the call ---------------------------------------------------------

    async def request(
        self,
        resource: ResourceType | str,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
        options: RequestOptions | None = None,
        decode: Any = None,
    ) -> Any:
        """Send one logical call to ``/api/v1/<path>``, retrying as retry.py rules.

        ``json`` is any msgspec-encodable value (a Struct, a dict) or
        pre-encoded JSON bytes; ``content`` is a raw body sent with
        ``content_type``. ``decode`` is a msgspec target type, a function of the
        :class:`RawResponse`, or None. Returns the decoded value, or a
        :class:`RawResponse` / :class:`SignedURL` when ``options`` ask for one.
        """
        pool = self.pool(resource)
        opts = options or DEFAULT_OPTIONS
        method = method.upper()
        path = path.lstrip("/")
        if path.startswith("api/v1/"):
            path = path[len("api/v1/"):]
        endpoint = f"{method} {API_PREFIX}{path}"

        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self.base_url + API_PREFIX + path)
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[path] = url
        if opts.extra_query:
            url = url.copy_merge_params(dict(opts.extra_query))
        body = self._body(json, content, opts)
        read_timeout = opts.timeout if opts.timeout is not None else self.timeout
        connect_timeout = opts.connect_timeout if opts.connect_timeout is not None else self.connect_timeout

        call_headers = dict(self._headers)
        call_headers["Accept"] = accept or _JSON
        if body is not None:
            call_headers["Content-Type"] = content_type or (_JSON if content is None else "application/octet-stream")
            if opts.compress:
                body = zstandard.ZstdCompressor().compress(body)
                call_headers["Content-Encoding"] = "zstd"
        key = self._idempotency_key(method, opts)
        if key is not None:
            call_headers["X-Idempotency-Key"] = key
        call_headers["x-stainless-read-timeout"] = _seconds(read_timeout)
        if headers:
            call_headers.update(headers)
        if opts.extra_headers:
            call_headers.update(opts.extra_headers)

        policy = self.retry_policy
        if opts.max_retries is not None or opts.total_retry_timeout is not None:
            policy = msgspec.structs.replace(
                policy,
                max_retries=policy.max_retries if opts.max_retries is None else opts.max_retries,
                total_timeout=policy.total_timeout if opts.total_retry_timeout is None else opts.total_retry_timeout,
            )
        timeouts = {"connect": connect_timeout, "read": read_timeout, "write": read_timeout, "pool": None}
        # MockTransport and friends enforce no timeouts: bound the wait for headers ourselves.
        guard = connect_timeout + read_timeout
        max_bytes = opts.max_response_bytes if opts.max_response_bytes is not None else self.max_response_bytes
        deadline = max(opts.response_deadline if opts.response_deadline is not None else self.response_deadline, guard)

        started = trio.current_time()
        retries = 0
        while True:
            call_headers["x-stainless-retry-count"] = str(retries)
            raw_headers = [(name.encode(), value.encode()) for name, value in call_headers.items()]
            status: int | None = None
            response_headers: dict[str, str] | None = None
            failure: TinkerActorsError
            try:
                response, elapsed = await pool.send_parts(
                    method, url, raw_headers, body, timeouts, guard=guard, max_bytes=max_bytes, deadline=deadline
                )
            except ResponseTooLarge as exc:
                pool.record_error()  # not retried: the same request would get the same body
                raise ResponseDecodeError(str(exc), endpoint=endpoint) from None
            except (httpx.TimeoutException, trio.TooSlowError) as exc:
                failure = APITimeoutError(_describe(exc, "timed out", self._secrets), endpoint=endpoint)
                failure.__cause__ = exc
                retryable = True
            except (httpx.TransportError, httpx.DecodingError) as exc:
                if isinstance(exc, httpx.DecodingError):
                    pool.record_error()
                    raise _decode_error(exc, endpoint) from exc
                failure = APIConnectionError(_describe(exc, "connection failed", self._secrets), endpoint=endpoint)
                failure.__cause__ = exc
                retryable = True
            else:
                status = response.status_code
                response_headers = response.headers
                raw = RawResponse(status, response_headers, response.content, elapsed)
                if 200 <= status < 300:
                    if opts.raw:
                        pool.record_completed()
                        return raw
                    try:
                        value = decode_body(decode, raw, endpoint=endpoint)
                    except BaseException:
                        pool.record_error()
                        raise
                    pool.record_completed()
                    return value
                if 300 <= status < 400:
                    if opts.signed_url and (signed := signed_url_from(url, response_headers)) is not None:
                        pool.record_completed()
                        return signed
                    if opts.raw:
                        pool.record_completed()
                        return raw
                if is_proxy_rejection(status, response_headers, response.content) and pool.take_proxy_budget():
                    failure = APIConnectionError("proxy rejected the request (400, empty body)", endpoint=endpoint)
                    retryable = True
                else:
                    failure = status_error_from(
                        status, response_headers, response.content,
                        endpoint=endpoint, now=self._wall_clock(), secrets=self._secrets,
                    )
                    retryable = should_retry(status, response_headers) and not (opts.defer_429 and status == 429)

            delay = next_delay(
                attempt=retries,
                policy=policy,
                retryable=retryable,
                headers=response_headers,
                elapsed=trio.current_time() - started,
                now=self._wall_clock(),
                random=self._random,
            )
            if delay is None:
                pool.record_error()
                if retryable and retries:
                    gave_up(failure, attempts=retries + 1, elapsed=trio.current_time() - started,
                            budget=policy.total_timeout)
                raise failure
            log.info(
                "transport.retry",
                endpoint=endpoint,
                pool=pool.resource.value,
                attempt=retries + 1,
                delay=round(delay, 3),
                status=status,
                error=type(failure).__name__,
            )
            pool.record_retry()
            await trio.sleep(delay)
            retries += 1


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _describe(exc: BaseException, fallback: str, secrets: tuple[str, ...]) -> str:
    text = str(exc) or fallback
    return f"{type(exc).__name__}: {redact(text, *secrets)}"


def _decode_error(exc: httpx.DecodingError, endpoint: str) -> TinkerActorsError:
    return ResponseDecodeError(f"content-encoding: {exc}", endpoint=endpoint)
