"""Persistence under ``data_dir``: metadata in SQLite, weights as files.

Layout::

    data_dir/meta.sqlite3                         sessions, runs, checkpoints, samplers
    data_dir/runs/<run>/weights/<name>/           model files + checkpoint.json
    data_dir/runs/<run>/sampler_weights/<name>/   model files + checkpoint.json

Metadata rows are JSON documents keyed by (kind, id); the server keeps a copy
in memory and writes through, so a new server on the same dir sees everything.
Every path built here goes through :func:`safe_join`, which refuses anything
that would leave the data dir.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Iterator

_RUN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._\-]{0,199}$")
KINDS = {"weights": "training", "sampler_weights": "sampler", "external_weights": "external"}


class BadPath(ValueError):
    """A tinker path, run id or checkpoint name that is malformed or unsafe."""


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_RE.match(run_id) or ".." in run_id:
        raise BadPath(f"invalid training run id: {run_id!r}")
    return run_id


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise BadPath(
            f"invalid checkpoint name {name!r}: use letters, digits, '.', '_' and '-' (no '..', no '/')"
        )
    return name


def safe_join(root: Path, *parts: str) -> Path:
    """Join ``parts`` under ``root`` and refuse any result outside it."""
    for part in parts:
        if not part or "\x00" in part or part.startswith("/") or ".." in part.split("/"):
            raise BadPath("path escapes the data directory")
    out = root.joinpath(*parts).resolve()
    root_r = root.resolve()
    if out != root_r and root_r not in out.parents:
        raise BadPath("path escapes the data directory")
    return out


class Storage:
    """SQLite-backed documents plus the checkpoint directory tree."""

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "runs").mkdir(exist_ok=True)
        self._db = sqlite3.connect(self.root / "meta.sqlite3", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS docs (kind TEXT, id TEXT, body TEXT, seq INTEGER,"
            " PRIMARY KEY (kind, id))"
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    # -- documents ------------------------------------------------------
    def put(self, kind: str, doc_id: str, body: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO docs(kind, id, body, seq) VALUES (?, ?, ?,"
            " (SELECT COALESCE(MAX(seq), 0) + 1 FROM docs))"
            " ON CONFLICT(kind, id) DO UPDATE SET body = excluded.body",
            (kind, doc_id, json.dumps(body)),
        )
        self._db.commit()

    def delete(self, kind: str, doc_id: str) -> None:
        self._db.execute("DELETE FROM docs WHERE kind = ? AND id = ?", (kind, doc_id))
        self._db.commit()

    def load(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for doc_id, body in self._db.execute(
            "SELECT id, body FROM docs WHERE kind = ? ORDER BY seq", (kind,)
        ):
            yield doc_id, json.loads(body)

    # -- checkpoint directories ----------------------------------------
    def run_dir(self, run_id: str) -> Path:
        # ':' is legal on POSIX but not everywhere; '~' never appears in run ids
        return safe_join(self.root, "runs", check_run_id(run_id).replace(":", "~"))

    def checkpoint_dir(self, run_id: str, kind: str, name: str) -> Path:
        if kind not in KINDS:
            raise BadPath(f"unknown checkpoint kind {kind!r}")
        return safe_join(self.run_dir(run_id), kind, check_name(name))

    def remove_checkpoint(self, run_id: str, kind: str, name: str) -> None:
        path = self.checkpoint_dir(run_id, kind, name)
        if path.exists():
            shutil.rmtree(path)


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
