"""Every wire Struct, under the SDK's names (``tinker.types.*``).

Modules by area: ``model_input``, ``tensor_data``, ``training``, ``model``,
``sampling``, ``futures``, ``session``, ``config``, ``weights``, ``rest``,
``telemetry``. Import from here (or from ``tinker_actors.wire``) rather than
from the area modules.
"""

from __future__ import annotations

from . import admin as _admin
from . import config as _config
from . import futures as _futures
from . import model as _model
from . import model_input as _model_input
from . import rest as _rest
from . import sampling as _sampling
from . import session as _session
from . import telemetry as _telemetry
from . import tensor_data as _tensor_data
from . import training as _training
from . import weights as _weights
from .admin import *  # noqa: F403
from .config import *  # noqa: F403
from .futures import *  # noqa: F403
from .model import *  # noqa: F403
from .model_input import *  # noqa: F403
from .rest import *  # noqa: F403
from .sampling import *  # noqa: F403
from .session import *  # noqa: F403
from .telemetry import *  # noqa: F403
from .tensor_data import *  # noqa: F403
from .training import *  # noqa: F403
from .weights import *  # noqa: F403

__all__ = [
    *_admin.__all__,
    *_config.__all__,
    *_futures.__all__,
    *_model.__all__,
    *_model_input.__all__,
    *_rest.__all__,
    *_sampling.__all__,
    *_session.__all__,
    *_telemetry.__all__,
    *_tensor_data.__all__,
    *_training.__all__,
    *_weights.__all__,
]
