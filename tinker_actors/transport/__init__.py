"""HTTP transport: pools per resource type, headers, idempotency keys, the single
retry layer, redirects to signed URLs, raw responses and typed errors.

    async with Transport(base_url, api_key) as transport:
        value = await transport.request(ResourceType.SESSION, "POST", "create_session",
                                        json=body, decode=CreateSessionResponse)
"""

from .client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Transport
from .limits import PoolLimits, ResourceType
from .options import AUTO, DEFAULT_OPTIONS, OMIT, IdempotencyKey, RawResponse, RequestOptions, SignedURL
from .pool import Pool
from .retry import RetryPolicy
from .stats import LatencySummary, PoolStatistics

__all__ = [
    "Transport",
    "Pool",
    "PoolLimits",
    "ResourceType",
    "RequestOptions",
    "DEFAULT_OPTIONS",
    "IdempotencyKey",
    "AUTO",
    "OMIT",
    "RawResponse",
    "SignedURL",
    "RetryPolicy",
    "PoolStatistics",
    "LatencySummary",
    "DEFAULT_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
]
