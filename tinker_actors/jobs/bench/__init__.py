"""``tinker-actors bench``: repeatable load against a Tinker endpoint, and figures people trust.

One module per job:

* :mod:`.workload`   what a run does (TOML/JSON workloads, presets, phases);
* :mod:`.scheduler`  when each request is sent (open loop at a rate, closed loop);
* :mod:`.target`     what a request is, on tinker_actors' clients;
* :mod:`.recorder`   what one trial records (HDR histograms, lag, states, timeline);
* :mod:`.histograms` HDR latency histograms (mergeable, exact to 0.1 %);
* :mod:`.monitor`    the server's counters and the client's retries, once a second;
* :mod:`.runner`     trials and repeats, the knee of a ramp;
* :mod:`.compare`    medians, confidence intervals and significance (``bench compare``);
* :mod:`.history`    the local SQLite store of past runs (``bench history``);
* :mod:`.report`     bench.json, the terminal tables, the HTML report;
* :mod:`.plots`      the PNGs (matplotlib, the ``plots`` extra).
"""

from .results import BenchResult, read_result, write_result
from .runner import run_bench, run_trial, run_workload
from .target import ClientTarget, Target
from .workload import Workload, WorkloadError, load_workload, preset, workload_from_dict

__all__ = [
    "BenchResult", "read_result", "write_result", "run_bench", "run_trial", "run_workload",
    "ClientTarget", "Target", "Workload", "WorkloadError", "load_workload", "preset", "workload_from_dict",
]
