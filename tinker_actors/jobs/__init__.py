"""Jobs built on the public clients: sampling sweeps, trainer loops, benchmarks.

The client-independent core lives here: the sweep spec and its request keys
(``sweep_spec``), the SQLite journal (``journal``), the adaptive concurrency
controller (``aimd``), progress reporting (``progress``), result export
(``export``) and the trainer's checkpoint schedule and resume record
(``checkpoint_policy``). The runners built on them: ``sweep`` (run_sweep),
``trainer`` (Trainer), ``bench`` (a package: workloads, the open/closed-loop
scheduler, HDR histograms, comparisons, history, reports; run_bench),
``download`` (verified checkpoint archives) and ``demo``. This package imports only
``tinker_actors.wire``, ``tinker_actors.errors`` and ``tinker_actors.clients``.
"""
