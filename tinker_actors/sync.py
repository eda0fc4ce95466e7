"""Blocking facade for scripts and notebooks: the runtime on one loop thread.

    from tinker_actors.sync import ServiceClient

    with ServiceClient(base_url=..., api_key=...) as service:
        training = service.create_lora_training_client("tinker-actors/byte-lm-tiny").result()

Futures are ``concurrent.futures.Future`` objects: ``.result(timeout)`` blocks, and
asyncio code awaits them with ``asyncio.wrap_future``.
"""

from .clients.sync import RestClient, SamplingClient, ServiceClient, SyncFuture, TrainingClient

__all__ = ["ServiceClient", "TrainingClient", "SamplingClient", "RestClient", "SyncFuture"]
