"""Endpoint-level typed layer: one method per Tinker route, generated from one table.

``API(requester)`` groups the resources (``service``, ``models``, ``weights``,
``futures``, ``training``, ``sampling``, ``telemetry``, ``rest``); each method
takes a typed request Struct plus ``timeout``, ``max_retries``,
``idempotency_key``, ``extra_headers``, ``extra_query``, ``extra_body``, and
each resource has ``.with_raw_response``. The public clients are built on it.
"""

from .endpoints import ENDPOINTS, Endpoint, endpoint
from .resources import (
    API,
    FuturesResource,
    ModelsResource,
    Requester,
    Resource,
    RestResource,
    SamplingResource,
    ServiceResource,
    TelemetryResource,
    TrainingResource,
    WeightsResource,
    build_options,
    route,
    wire_type,
)

__all__ = [
    "API",
    "ENDPOINTS",
    "Endpoint",
    "endpoint",
    "Requester",
    "Resource",
    "route",
    "build_options",
    "wire_type",
    "ServiceResource",
    "ModelsResource",
    "WeightsResource",
    "FuturesResource",
    "TrainingResource",
    "SamplingResource",
    "TelemetryResource",
    "RestResource",
]
