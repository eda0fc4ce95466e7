"""One adapter module per client; each exposes ``run(scenario, base_url, api_key, params)``.

Adapters import their client library inside ``run`` so the start-up scenario
can time that import in a fresh process.
"""

ADAPTERS = {
    "floor": "benchmarks.clients.floor_client",
    "sdk": "benchmarks.clients.sdk_client",
    "tinker_actors": "benchmarks.clients.tinker_actors_client",
}
