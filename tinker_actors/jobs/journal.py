"""The sweep journal: an embedded SQLite file that makes a sweep resumable.

Every request of a sweep is a row. Its life is::

    pending --mark_sent--> sent --record_result--> done      (final)
                             \\--record_failure--> failed    (retryable: sent again on resume)

Guarantees, which hold across SIGKILL at any instant:

* a row is either ``done`` with its whole result, or not done. The state and
  the result are written by one UPDATE in one transaction, so there is no
  moment where one is on disk without the other;
* a ``done`` row is never sent again: :meth:`Journal.pending` skips it and
  :meth:`Journal.mark_sent` refuses to touch it;
* a result is never duplicated: :meth:`Journal.record_result` on a row that is
  already done changes nothing and returns False.

What a crash can cost is the last few commits (with ``synchronous=NORMAL``, see
below) or results still buffered in a :class:`JournalWriter`. Those rows are
simply not done, so the resumed sweep sends them again under the same
idempotency key, and a server that honours the key answers without charging
twice.

Durability setting. WAL with ``synchronous=NORMAL`` is crash-safe against the
process dying (SIGKILL, OOM): committed transactions sit in the WAL in the OS
page cache and survive. Only an OS crash or power loss can roll back the most
recent commits, and never corrupts the file. A lost commit here costs one
re-sent request, while ``FULL`` costs an fsync per commit (milliseconds on
most disks), so NORMAL is the default; ``durable=True`` selects FULL.

No threads. sqlite3 blocks, and the library runs no threads outside the sync
facade, so writes run on the trio thread. They are kept tiny (one indexed
UPDATE each; WAL commits cost tens of microseconds to about a millisecond)
and can be grouped: :meth:`Journal.transaction` batches synchronous calls into
one commit, and :class:`JournalWriter` buffers results from many tasks and
commits them in batches from one trio task.

Keys and generations. A row carries its request key (which covers the
request's content, see ``sweep_spec``) and the idempotency key it is sent
under. When the server has forgotten a request's future (410, or 404 after a
restart) :meth:`Journal.next_generation` moves the row to a new, derived
idempotency key and commits that *before* the request is sent again, so a
crash after the re-send still re-sends under the same new key.

Damage. A journal SQLite cannot read (``database disk image is malformed``,
``file is not a database``) raises :class:`JournalCorruptError`, which names
the file and says how to start over and what can still be recovered.

One writer. A sidecar ``<journal>.lock`` file is held with ``flock`` while a
journal is open for writing, so a second sweep on the same journal fails fast
instead of interleaving; the OS drops the lock when the process dies.
Readers (status, export) open with ``readonly=True`` and take no lock.

Secrets. The journal never receives the API key: requests are stored as keys
and digests, and error text passes through :func:`tinker_actors.errors.redact`.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec
import trio

from tinker_actors.errors import ConfigError, redact

from .._log import get_logger
from .records import SampleResult
from .sweep_spec import idempotency_key

__all__ = [
    "Journal",
    "JournalCorruptError",
    "JournalRow",
    "JournalWriter",
    "PlannedRequest",
    "open_journal_writer",
]

log = get_logger(__name__)

# 2: request keys cover the request's content; rows have a generation.
SCHEMA_VERSION = "2"
_READABLE_SCHEMAS = ("1", "2")


class JournalCorruptError(ConfigError):
    """The journal file is damaged: SQLite cannot read it.

    ``path`` is the file; the message says how to start over and what can be
    recovered.
    """

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        super().__init__(
            f"{path}: the sweep journal is damaged and cannot be read (sqlite: {detail}). "
            f"To start over, move it aside (mv {path} {path}.damaged; also its -wal and -shm "
            f"files if present) or point the sweep at a new journal (--journal NEW.sqlite, or [output] journal). "
            "What is recoverable: the results file written by the last finished run is untouched; finished results "
            f"still readable in the damaged file can be salvaged with the sqlite3 shell "
            f"(sqlite3 {path} .recover | sqlite3 recovered.sqlite); requests sent again under the same sweep "
            "name reuse their idempotency keys, so a server that still has them answers without computing again."
        )


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    # SQLITE_CORRUPT and SQLITE_NOTADB surface as the base DatabaseError; the
    # subclasses (OperationalError for locks and I/O, IntegrityError, ...) are
    # other problems.
    name = getattr(exc, "sqlite_errorname", "")
    return type(exc) is sqlite3.DatabaseError or name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


@contextlib.contextmanager
def _guard(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if _is_corruption(exc):
            raise JournalCorruptError(path, str(exc)) from None
        raise

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    seq             INTEGER PRIMARY KEY,
    key             TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL,
    prompt_id       TEXT NOT NULL,
    setting_index   INTEGER NOT NULL,
    payload_digest  TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    request_id      TEXT,
    sent_at         REAL,
    finished_at     REAL,
    latency_s       REAL,
    stop_reasons    TEXT,
    num_tokens      INTEGER,
    result          BLOB,
    error           TEXT,
    retryable       INTEGER,
    generation      INTEGER NOT NULL DEFAULT 0,
    CHECK ((state = 'done') = (result IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS requests_open ON requests (state) WHERE state != 'done';
CREATE INDEX IF NOT EXISTS requests_slot ON requests (prompt_id, setting_index);
"""

_encode = msgspec.json.Encoder().encode
_decode_result = msgspec.json.Decoder(SampleResult).decode


class PlannedRequest(Protocol):
    """What :meth:`Journal.plan` needs of a request (``SweepRequest`` has it)."""

    key: str
    idempotency_key: str

    @property
    def payload_digest(self) -> str: ...

    @property
    def prompt(self) -> Any: ...  # has .id

    @property
    def setting(self) -> Any: ...  # has .index


class JournalRow(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    key: str
    idempotency_key: str
    prompt_id: str
    setting_index: int
    state: str
    attempts: int
    request_id: str | None = None
    sent_at: float | None = None
    finished_at: float | None = None
    latency_s: float | None = None
    stop_reasons: list[str] | None = None
    result: SampleResult | None = None
    error: str | None = None
    retryable: bool | None = None
    generation: int = 0


_ROW_COLUMNS = (
    "seq, key, idempotency_key, prompt_id, setting_index, state, attempts, request_id,"
    " sent_at, finished_at, latency_s, stop_reasons, result, error, retryable, generation"
)
# Schema 1 has no generation column (every row is at generation 0).
_ROW_COLUMNS_V1 = _ROW_COLUMNS.replace(", generation", ", 0")


def _row(r: tuple[Any, ...], *, with_result: bool = True) -> JournalRow:
    return JournalRow(
        seq=r[0],
        key=r[1],
        idempotency_key=r[2],
        prompt_id=r[3],
        setting_index=r[4],
        state=r[5],
        attempts=r[6],
        request_id=r[7],
        sent_at=r[8],
        finished_at=r[9],
        latency_s=r[10],
        stop_reasons=None if r[11] is None else r[11].split("\x1f"),
        result=_decode_result(r[12]) if with_result and r[12] is not None else None,
        error=r[13],
        retryable=None if r[14] is None else bool(r[14]),
        generation=int(r[15]),
    )


class Journal:
    """One sweep's journal file. Use as a context manager; single writer."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lock_fd: int | None) -> None:
        self._conn = conn
        self.path = path
        self._lock_fd = lock_fd
        self._tx_depth = 0
        self._columns = _ROW_COLUMNS

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        spec_id: str,
        spec_hash: str,
        durable: bool = False,
        readonly: bool = False,
    ) -> Journal:
        """Open the journal of a spec, creating it if missing.

        Raises ConfigError if the file belongs to another spec (its spec hash
        differs) or another process is writing to it, and
        :class:`JournalCorruptError` if SQLite cannot read it.
        """
        path = Path(path)
        lock_fd = None
        if readonly:
            if not path.exists():
                raise ConfigError(f"{path}: no such journal")
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = _take_lock(path)
            conn = sqlite3.connect(path, isolation_level=None)
        try:
            with _guard(path):
                if not readonly:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                    # An older journal is refused by _claim before the new schema touches it.
                    if _schema_of(conn) in (None, SCHEMA_VERSION):
                        conn.executescript(_SCHEMA)
                journal = cls(conn, path, lock_fd)
                journal._claim(spec_id, spec_hash, readonly=readonly)
        except BaseException:
            conn.close()
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return journal

    def _claim(self, spec_id: str, spec_hash: str, *, readonly: bool) -> None:
        if _schema_of(self._conn) is None and readonly:
            raise ConfigError(f"{self.path}: not a sweep journal (no metadata)")
        meta = dict(self._conn.execute("SELECT name, value FROM meta"))
        if not meta:
            if readonly:
                raise ConfigError(f"{self.path}: not a sweep journal (no metadata)")
            with self.transaction():
                self._conn.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [
                        ("schema_version", SCHEMA_VERSION),
                        ("spec_id", spec_id),
                        ("spec_hash", spec_hash),
                        ("created_at", repr(time.time())),
                    ],
                )
            return
        version = meta.get("schema_version")
        if version == "1" and readonly:
            self._columns = _ROW_COLUMNS_V1
        elif version == "1":
            raise ConfigError(
                f"{self.path}: this journal was written by an older tinker_actors whose request keys did not "
                "cover the request's content (a changed grid under the same sweep name was answered with old "
                "results). Its results stay readable (--status, --export-only). To continue the sweep, point it "
                "at a new journal (--journal NEW.sqlite, or [output] journal)."
            )
        elif version not in _READABLE_SCHEMAS:
            raise ConfigError(f"{self.path}: journal schema {version!r}, expected {SCHEMA_VERSION!r}")
        if meta.get("spec_hash") != spec_hash or meta.get("spec_id") != spec_id:
            raise ConfigError(
                f"{self.path}: journal belongs to a different sweep spec "
                f"(journal: id {meta.get('spec_id')!r}, hash {str(meta.get('spec_hash'))[:12]}; "
                f"spec: id {spec_id!r}, hash {spec_hash[:12]}). "
                "Point [output] journal at a new file to start a new sweep."
            )

    def close(self) -> None:
        self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit; nested use joins the outer one."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield
            finally:
                self._tx_depth -= 1
            return
        with _guard(self.path):
            self._conn.execute("BEGIN IMMEDIATE")
            self._tx_depth = 1
            try:
                yield
            except BaseException:
                self._tx_depth = 0
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._tx_depth = 0
            self._conn.execute("COMMIT")

    # ------------------------------------------------------------ writes

    def plan(self, requests: Iterable[PlannedRequest]) -> int:
        """Insert every request not yet journaled; returns how many were new.

        Idempotent: re-planning the same sweep inserts nothing. A request whose
        (prompt id, setting) is journaled under another key (its prompt's
        content changed under the same id) raises ConfigError and inserts nothing.
        """
        with _guard(self.path), self.transaction():
            self._conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS plan_in (key TEXT PRIMARY KEY, idem TEXT, pid TEXT, sidx INTEGER, digest TEXT)"
            )
            self._conn.execute("DELETE FROM plan_in")
            try:
                self._conn.executemany(
                    "INSERT INTO plan_in VALUES (?, ?, ?, ?, ?)",
                    ((r.key, r.idempotency_key, r.prompt.id, r.setting.index, r.payload_digest) for r in requests),
                )
            except sqlite3.IntegrityError:
                raise ConfigError(f"{self.path}: the plan lists the same request key twice") from None
            clash = self._conn.execute(
                "SELECT p.pid, p.sidx FROM plan_in p JOIN requests r ON r.prompt_id = p.pid AND r.setting_index = p.sidx"
                " WHERE r.key != p.key OR r.payload_digest != p.digest LIMIT 1"
            ).fetchone()
            if clash:
                raise ConfigError(
                    f"{self.path}: prompt {clash[0]!r} (setting {clash[1]}) changed since it was journaled; "
                    "give changed prompts new ids or start a new journal"
                )
            before = self._conn.total_changes
            self._conn.execute(
                "INSERT OR IGNORE INTO requests (key, idempotency_key, prompt_id, setting_index, payload_digest)"
                " SELECT key, idem, pid, sidx, digest FROM plan_in ORDER BY rowid"
            )
            added = self._conn.total_changes - before
            self._conn.execute("DELETE FROM plan_in")
        return added

    def mark_sent(self, key: str, *, request_id: str | None = None, now: float | None = None) -> bool:
        """Record that ``key`` is about to be sent (attempt + 1). False if it is done."""
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE requests SET state = 'sent', attempts = attempts + 1, sent_at = ?,"
                " request_id = coalesce(?, request_id), error = NULL, retryable = NULL"
                " WHERE key = ? AND state != 'done'",
                (time.time() if now is None else now, request_id, key),
            )
            if cur.rowcount == 0:
                self._require(key)
        return cur.rowcount == 1

    def next_generation(self, key: str, *, seen: int) -> tuple[int, str]:
        """Move ``key`` to a new idempotency key, because the server forgot the old one's future.

        ``seen`` is the generation the caller sent under; if the row already
        moved past it nothing changes. Returns the row's (generation,
        idempotency key) as committed, before anything is sent under it.
        """
        with _guard(self.path), self.transaction():
            row = self._conn.execute("SELECT generation, idempotency_key FROM requests WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(f"request {key!r} is not in the journal {self.path}")
            generation, idem = int(row[0]), str(row[1])
            if generation == seen:
                generation += 1
                idem = idempotency_key(key, generation)
                self._conn.execute(
                    "UPDATE requests SET generation = ?, idempotency_key = ?, request_id = NULL WHERE key = ? AND state != 'done'",
                    (generation, idem, key),
                )
        return generation, idem

    def record_request_id(self, key: str, request_id: str) -> None:
        """Remember the server's future id, so a restarted process can re-attach."""
        with self.transaction():
            self._conn.execute(
                "UPDATE requests SET request_id = ? WHERE key = ? AND state != 'done'", (request_id, key)
            )

    def record_result(
        self, key: str, result: SampleResult, *, latency_s: float | None = None, now: float | None = None
    ) -> bool:
        """Mark ``key`` done with its result. False (and no change) if it already was."""
        if latency_s is not None and not math.isfinite(latency_s):
            latency_s = None
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE requests SET state = 'done', result = ?, latency_s = ?, finished_at = ?,"
                " stop_reasons = ?, num_tokens = ?, request_id = coalesce(?, request_id),"
                " error = NULL, retryable = NULL"
                " WHERE key = ? AND state != 'done'",
                (
                    _encode(result),
                    latency_s,
                    time.time() if now is None else now,
                    "\x1f".join(result.stop_reasons),
                    result.num_tokens,
                    result.request_id,
                    key,
                ),
            )
            if cur.rowcount == 0:
                self._require(key)
        return cur.rowcount == 1

    def record_failure(self, key: str, error: str, *, retryable: bool, now: float | None = None) -> bool:
        """Mark ``key`` failed. A retryable failure is sent again by the next run."""
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE requests SET state = 'failed', error = ?, retryable = ?, finished_at = ?"
                " WHERE key = ? AND state != 'done'",
                (redact(error)[:4000], int(retryable), time.time() if now is None else now, key),
            )
            if cur.rowcount == 0:
                self._require(key)
        return cur.rowcount == 1

    def _require(self, key: str) -> None:
        if self._conn.execute("SELECT 1 FROM requests WHERE key = ?", (key,)).fetchone() is None:
            raise KeyError(f"request {key!r} is not in the journal {self.path}")

    # ------------------------------------------------------------ reads

    def pending(self, *, include_failed: bool = False) -> Iterator[JournalRow]:
        """Requests still to send, in plan order.

        That is every row that is not done and not a permanent failure (pass
        ``include_failed=True`` to retry those too). ``sent`` rows are included:
        they were in flight when a previous run stopped.
        """
        where = "state != 'done'" if include_failed else "state != 'done' AND NOT (state = 'failed' AND retryable = 0)"
        # fetchall: the caller writes while iterating, and a live cursor over
        # rows being updated would see its own writes.
        with _guard(self.path):
            rows = self._conn.execute(f"SELECT {self._columns} FROM requests WHERE {where} ORDER BY seq").fetchall()
        for r in rows:
            yield _row(r, with_result=False)

    def get(self, key: str) -> JournalRow | None:
        with _guard(self.path):
            r = self._conn.execute(f"SELECT {self._columns} FROM requests WHERE key = ?", (key,)).fetchone()
        return None if r is None else _row(r)

    def counts(self) -> dict[str, int]:
        """Rows per state, plus ``total`` and ``failed_permanent``."""
        out = {"pending": 0, "sent": 0, "done": 0, "failed": 0}
        with _guard(self.path):
            for state, n in self._conn.execute("SELECT state, count(*) FROM requests GROUP BY state"):
                out[state] = n
            out["total"] = sum(out.values())
            (out["failed_permanent"],) = self._conn.execute(
                "SELECT count(*) FROM requests WHERE state = 'failed' AND retryable = 0"
            ).fetchone()
        return out

    def results(self, *, states: Iterable[str] = ("done", "failed"), batch: int = 1000) -> Iterator[JournalRow]:
        """Finished rows in plan order (stable across runs), fetched in batches."""
        wanted = tuple(states)
        marks = ",".join("?" * len(wanted))
        last = 0
        while True:
            with _guard(self.path):
                rows = self._conn.execute(
                    f"SELECT {self._columns} FROM requests WHERE state IN ({marks}) AND seq > ? ORDER BY seq LIMIT ?",
                    (*wanted, last, batch),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield _row(r)
            last = rows[-1][0]

    def meta(self) -> dict[str, str]:
        with _guard(self.path):
            return dict(self._conn.execute("SELECT name, value FROM meta"))


def _schema_of(conn: sqlite3.Connection) -> str | None:
    """The journal's schema version; None for a file with no journal in it yet."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return None if row is None else str(row[0])


def _take_lock(path: Path) -> int:
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"{path}: journal is in use by another process") from None
    return fd


# ---------------------------------------------------------------- batching


class _Pending(msgspec.Struct):
    key: str
    result: SampleResult | None
    latency_s: float | None
    error: str | None
    retryable: bool
    finished_at: float


class JournalWriter:
    """Buffers results from many trio tasks and commits them in batches.

    Results reach the file at most ``max_delay`` seconds (trio clock) or
    ``max_batch`` results after they arrive, in one transaction per batch, so
    a burst of 1,000 results costs a handful of commits rather than 1,000.
    Whatever is buffered when the process dies is not done in the journal,
    and is re-sent under the same idempotency key on resume.
    """

    def __init__(self, journal: Journal, *, max_batch: int = 256, max_delay: float = 0.05) -> None:
        self.journal = journal
        self.max_batch = max_batch
        self.max_delay = max_delay
        self._buffer: list[_Pending] = []
        self._wake = trio.Event()
        self.commits = 0
        self.written = 0

    def add_result(self, key: str, result: SampleResult, *, latency_s: float | None = None) -> None:
        self._buffer.append(_Pending(key, result, latency_s, None, False, time.time()))
        if len(self._buffer) >= self.max_batch:
            self._wake.set()

    def add_failure(self, key: str, error: str, *, retryable: bool) -> None:
        self._buffer.append(_Pending(key, None, None, error, retryable, time.time()))
        if len(self._buffer) >= self.max_batch:
            self._wake.set()

    def flush(self) -> int:
        """Commit everything buffered now, in one transaction."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return 0
        with self.journal.transaction():
            for p in batch:
                if p.result is not None:
                    self.journal.record_result(p.key, p.result, latency_s=p.latency_s, now=p.finished_at)
                else:
                    self.journal.record_failure(p.key, p.error or "", retryable=p.retryable, now=p.finished_at)
        self.commits += 1
        self.written += len(batch)
        return len(batch)

    async def run(self) -> None:
        try:
            while True:
                with trio.move_on_after(self.max_delay):
                    await self._wake.wait()
                self._wake = trio.Event()
                self.flush()
        finally:
            # Runs on cancellation too: a clean stop loses nothing.
            self.flush()


@contextlib.asynccontextmanager
async def open_journal_writer(
    journal: Journal, *, max_batch: int = 256, max_delay: float = 0.05
) -> AsyncIterator[JournalWriter]:
    """A :class:`JournalWriter` whose flush task lives for the ``async with`` block."""
    writer = JournalWriter(journal, max_batch=max_batch, max_delay=max_delay)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        try:
            yield writer
        finally:
            nursery.cancel_scope.cancel()
    log.debug("journal_writer_closed", commits=writer.commits, written=writer.written)
