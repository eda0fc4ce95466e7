"""``tinker.lib.public_interfaces`` of the drop-in: the clients and their futures in one place."""

from __future__ import annotations

from ._backcompat import BackcompatSamplingClientFuture, BackcompatTrainingClientFuture
from .api_future import APIFuture, AwaitableConcurrentFuture
from .rest_client import AdminClient, RestClient
from .sampling_client import SamplingClient
from .service_client import ServiceClient
from .training_client import TrainingClient
from ..clients.service import LossHandle

PerDatumLossFn = object  # the SDK's callable protocol; any callable ``fn(logprobs, **inputs)`` is accepted

__all__ = [
    "ServiceClient", "TrainingClient", "BackcompatTrainingClientFuture", "SamplingClient",
    "BackcompatSamplingClientFuture", "RestClient", "AdminClient", "APIFuture", "AwaitableConcurrentFuture",
    "LossHandle", "PerDatumLossFn",
]
