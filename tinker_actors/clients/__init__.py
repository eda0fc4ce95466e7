"""Public clients: ServiceClient, TrainingClient, SamplingClient, RestClient, futures, sync facade.

trio first::

    async with open_service_client(base_url=..., api_key=...) as service:
        training = await service.create_lora_training_client(base_model, rank=8)

Blocking (scripts, notebooks) and asyncio: :mod:`tinker_actors.clients.sync`.
"""

from .futures import APIFuture, CancelledError, FutureState, StateChange
from .rest import ParsedTinkerPath, RestClient, parse_tinker_path
from .sampling import SamplingClient
from .service import LossHandle, ServiceClient, open_service_client
from .tokenizer import ByteTokenizer, load_tokenizer
from .training import TrainingClient

__all__ = [
    "open_service_client",
    "ServiceClient",
    "TrainingClient",
    "SamplingClient",
    "RestClient",
    "APIFuture",
    "FutureState",
    "StateChange",
    "CancelledError",
    "LossHandle",
    "ParsedTinkerPath",
    "parse_tinker_path",
    "ByteTokenizer",
    "load_tokenizer",
]
