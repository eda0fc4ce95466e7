"""The runtime: actors in one trio nursery owned by :func:`open_service`.

See the module docstrings: ``mailbox`` (envelopes), ``supervisor``,
``pool_actor``, ``requester``, ``poller``, ``heartbeat``, ``dynamic_config``,
``telemetry``, ``admission``, ``sequencer``, ``budget``, ``stats``, ``config``
and ``service``.
"""

from .admission import SamplingAdmission
from .config import PollSettings, ServerFlags, ServiceConfig
from .heartbeat import HeartbeatActor, SessionHealth
from .mailbox import Envelope, Mailbox, call
from .poller import FutureHandle, FuturePoller, FutureSpec, FutureState
from .requester import Requester, Resource
from .sequencer import TrainingSequencer
from .service import Service, open_service
from .supervisor import RestartPolicy, run_supervised
from .telemetry import TelemetryBatcher

__all__ = [
    "Envelope", "FutureHandle", "FuturePoller", "FutureSpec", "FutureState", "HeartbeatActor", "Mailbox",
    "PollSettings", "Requester", "Resource", "RestartPolicy", "SamplingAdmission", "ServerFlags", "Service",
    "ServiceConfig", "SessionHealth", "TelemetryBatcher", "TrainingSequencer", "call", "open_service", "run_supervised",
]
