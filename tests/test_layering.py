"""The import rules of docs/architecture.md, checked on the source tree.

wire <- transport <- api <- runtime <- clients <- jobs <- cli; the local server
imports only wire (and itself). A violation here is a design bug, not style.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "tinker_actors"

# For each layer, the tinker_actors subpackages it must never import.
FORBIDDEN = {
    "wire": {"transport", "api", "runtime", "clients", "jobs", "cli", "server", "sdk"},
    "transport": {"api", "runtime", "clients", "jobs", "cli", "server", "sdk"},
    "api": {"runtime", "clients", "jobs", "cli", "server", "sdk"},
    "runtime": {"clients", "jobs", "cli", "server", "sdk"},
    "clients": {"jobs", "cli", "server", "sdk"},
    # the drop-in for SDK programs sits on the public clients, beside the jobs
    "sdk": {"jobs", "cli", "server"},
    "server": {"transport", "api", "runtime", "clients", "jobs", "cli", "sdk"},
}


def _imported_subpackages(path: pathlib.Path) -> set[str]:
    """Top-level tinker_actors subpackages that a module imports (absolute or relative)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel_parts = path.relative_to(PKG).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "tinker_actors" and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "tinker_actors" and len(parts) > 1:
                    found.add(parts[1])
            else:
                # a relative import climbs `level` packages up from this module's package
                base = list(rel_parts[:-1])
                up = node.level - 1
                if up > len(base):
                    continue
                base = base[: len(base) - up]
                target = base + (node.module.split(".") if node.module else [])
                if target:
                    found.add(target[0])
                elif node.module is None:
                    found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer: str) -> None:
    offenders = []
    for path in sorted((PKG / layer).rglob("*.py")):
        if "proto" in path.parts and path.name.endswith("_pb2.py"):
            continue
        bad = _imported_subpackages(path) & FORBIDDEN[layer]
        if bad:
            offenders.append(f"{path.relative_to(PKG)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_client_import_does_not_load_the_server() -> None:
    code = (
        "import sys, tinker_actors, tinker_actors.sync;"
        "bad=[m for m in sys.modules if m.startswith('tinker_actors.server')];"
        "print(bad); raise SystemExit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
