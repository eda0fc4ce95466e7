"""tinker_actors: a trio-native client, job runner and local server for the Tinker API.

trio first::

    import tinker_actors

    async with tinker_actors.open_service(base_url=..., api_key=...) as service:
        training = await service.create_lora_training_client("tinker-actors/byte-lm-tiny", rank=8)

Blocking scripts and notebooks use :mod:`tinker_actors.sync`; asyncio code awaits
its futures through ``asyncio.wrap_future``.
"""

from ._version import __version__
from .clients import (
    APIFuture,
    ByteTokenizer,
    FutureState,
    LossHandle,
    RestClient,
    SamplingClient,
    ServiceClient,
    TrainingClient,
    open_service_client,
)
from .clients import open_service_client as open_service

__all__ = [
    "__version__",
    "open_service",
    "open_service_client",
    "ServiceClient",
    "TrainingClient",
    "SamplingClient",
    "RestClient",
    "APIFuture",
    "FutureState",
    "LossHandle",
    "ByteTokenizer",
]
