"""The official SDK's API (``tinker`` 0.38) on top of the tinker_actors runtime.

Code written for the SDK runs unchanged once ``import tinker`` resolves here::

    import tinker_actors.sdk
    tinker_actors.sdk.install()      # before the program's first `import tinker`
    import tinker                    # this package, under the SDK's names

or, for a whole program, ``python -m tinker_actors.sdk program.py [args]``.
Importing this package directly works too (``from tinker_actors import sdk as tinker``).

What is the same as the SDK: the names and signatures of ``ServiceClient``,
``TrainingClient``, ``SamplingClient``, ``RestClient``, ``AdminClient`` and
every ``*_async`` variant; futures with ``.result()`` in plain code and
``await`` in asyncio code, and client futures that stand in for the client;
the types' behaviour (:mod:`tinker_actors.sdk.types`); the exception classes
and hierarchy. What is underneath is ours: one trio loop thread per
ServiceClient runs the session, heartbeat, poller and connection pools
(docs/migrating.md, "Drop-in"). No other thread is started.
"""

from __future__ import annotations

from typing import TypedDict

from httpx import Timeout

from .. import __version__ as _actors_version
from . import auth, types
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BillingError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestFailedError,
    TinkerError,
    UnprocessableEntityError,
)
from ._install import install, uninstall
from .public_interfaces import (
    AdminClient,
    APIFuture,
    BackcompatSamplingClientFuture,
    BackcompatTrainingClientFuture,
    LossHandle,
    PerDatumLossFn,
    RestClient,
    SamplingClient,
    ServiceClient,
    TrainingClient,
)
from .types import (
    AdamOptimizerConfig,
    AdamParams,
    Checkpoint,
    CheckpointType,
    Datum,
    DimuonOptimizerConfig,
    DimuonParams,
    DmelChunk,
    EncodedTextChunk,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
    LoraConfig,
    ModelID,
    ModelInput,
    ModelInputChunk,
    OptimParams,
    OptimStepRequest,
    OptimStepResponse,
    ParsedCheckpointTinkerPath,
    PromptProvenanceSpan,
    SampledProvenanceSpan,
    SampledSequence,
    SampleRequest,
    SampleResponse,
    SamplingParams,
    StopReason,
    TensorData,
    TensorDtype,
    TrainingRun,
)


class RequestOptions(TypedDict, total=False):
    """Per-request options the SDK's low-level client takes."""

    headers: dict[str, str]
    max_retries: int
    timeout: float | Timeout | None
    params: dict[str, object]
    extra_json: dict[str, object]
    idempotency_key: str
    follow_redirects: bool


class ExperimentalWarning(UserWarning):
    """Warns about an experimental feature."""


__title__ = "tinker"
# The SDK version whose API this package reproduces (our own is tinker_actors.__version__).
__version__ = "0.38.0"
actors_version = _actors_version

__all__ = [
    "TrainingClient", "BackcompatTrainingClientFuture", "ServiceClient", "SamplingClient",
    "BackcompatSamplingClientFuture", "RestClient", "AdminClient", "APIFuture", "LossHandle", "PerDatumLossFn",
    "auth", "AdamOptimizerConfig", "AdamParams", "DimuonOptimizerConfig", "DimuonParams", "OptimParams",
    "Checkpoint", "CheckpointType", "Datum", "DmelChunk", "EncodedTextChunk", "ImageChunk", "ImageAssetPointerChunk",
    "ForwardBackwardOutput", "SampledProvenanceSpan", "LoraConfig", "ModelID", "ModelInput", "ModelInputChunk",
    "OptimStepRequest", "OptimStepResponse", "ParsedCheckpointTinkerPath", "PromptProvenanceSpan",
    "SampledSequence", "SampleRequest", "SampleResponse", "SamplingParams", "StopReason", "TensorData",
    "TensorDtype", "TrainingRun", "Timeout", "RequestOptions", "TinkerError", "APIError", "APIStatusError",
    "APITimeoutError", "APIConnectionError", "APIResponseValidationError", "RequestFailedError",
    "BadRequestError", "AuthenticationError", "BillingError", "PermissionDeniedError", "NotFoundError",
    "ConflictError", "UnprocessableEntityError", "RateLimitError", "InternalServerError", "ExperimentalWarning",
    "types", "__version__", "__title__", "install", "uninstall",
]
