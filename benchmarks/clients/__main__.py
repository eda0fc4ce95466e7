"""Child process entry: run one scenario with one client, write its figures as JSON.

    python -m benchmarks.clients CLIENT SCENARIO --base-url URL --params JSON --result PATH

The result file holds ``{"ok": true, "figures": {...}}`` or
``{"ok": false, "error": "..."}``; the parent never parses stdout, so library
logging cannot corrupt it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback

from . import ADAPTERS


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("client", choices=sorted(ADAPTERS))
    ap.add_argument("scenario")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--params", default="{}")
    ap.add_argument("--result", required=True)
    args = ap.parse_args()
    api_key = os.environ.get("TINKER_API_KEY", "tml-bench")
    try:
        adapter = importlib.import_module(ADAPTERS[args.client])
        figures = adapter.run(args.scenario, args.base_url, api_key, json.loads(args.params))
        out = {"ok": True, "figures": figures}
    except BaseException as exc:  # report every failure, including KeyboardInterrupt
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    with open(args.result, "w") as f:
        json.dump(out, f)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave at once: an SDK with abandoned requests would otherwise keep its
    # loop thread busy at interpreter exit. The result file is already closed.
    os._exit(code)
