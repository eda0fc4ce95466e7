"""Benchmark harness: tinker_actors against the official SDK and a raw-HTTP floor.

Run ``python -m benchmarks`` (``--quick`` for a one-minute check). One local
server process serves every client; each client runs in its own subprocess so
its CPU time and peak RSS are its own. See docs/benchmarks.md for the figures.

This package must stay cheap to import: the start-up scenario times the import
of each client library in a child process that has already imported it.
"""
