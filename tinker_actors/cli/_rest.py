"""The REST commands: checkpoints, runs, sessions, health, capabilities."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import httpx
import trio
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from tinker_actors.errors import APIConnectionError, status_error

from ._common import EXIT_FAILED, EXIT_OK, Globals, UsageError, base_url_for, connect, run_job


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    ck = sub.add_parser("checkpoints", parents=[common], help="list, delete, publish, unpublish, ttl, download checkpoints",
                        description="Manage saved checkpoints (tinker://<run>/weights/<name> or .../sampler_weights/<name>).")
    cs = ck.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = cs.add_parser("list", parents=[common], help="your checkpoints (or one run's)")
    p.add_argument("--run", default=None, help="only this training run's checkpoints")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(handler=cmd_checkpoints_list)
    for op, help_ in (
        ("delete", "delete checkpoints"),
        ("publish", "make a checkpoint public"),
        ("unpublish", "make a checkpoint private again"),
    ):
        p = cs.add_parser(op, parents=[common], help=help_)
        p.add_argument("paths", nargs="+", metavar="TINKER_PATH")
        p.set_defaults(handler=cmd_checkpoints_simple, op=op)
    p = cs.add_parser("ttl", parents=[common], help="set when a checkpoint expires ('none': never)")
    p.add_argument("paths", nargs=1, metavar="TINKER_PATH")
    p.add_argument("ttl", metavar="SECONDS|none")
    p.set_defaults(handler=cmd_checkpoints_simple, op="ttl")
    p = cs.add_parser("download", parents=[common], help="download a checkpoint archive (verified) and unpack it")
    p.add_argument("path", metavar="TINKER_PATH")
    p.add_argument("-o", "--output", type=Path, default=None, help="directory to unpack into (default: ./<run>-<name>)")
    p.add_argument("--no-extract", action="store_true", help="keep only the verified .tar.gz")
    p.set_defaults(handler=cmd_checkpoints_download)

    runs = sub.add_parser("runs", parents=[common], help="list and show training runs")
    rs = runs.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = rs.add_parser("list", parents=[common], help="your training runs")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(handler=cmd_runs_list)
    p = rs.add_parser("show", parents=[common], help="one training run and its checkpoints")
    p.add_argument("run_id", metavar="RUN_ID_OR_TINKER_PATH")
    p.set_defaults(handler=cmd_runs_show)

    sess = sub.add_parser("sessions", parents=[common], help="list and show sessions")
    ss = sess.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = ss.add_parser("list", parents=[common], help="your sessions")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(handler=cmd_sessions_list)
    p = ss.add_parser("show", parents=[common], help="the runs and samplers of one session")
    p.add_argument("session_id")
    p.set_defaults(handler=cmd_sessions_show)

    p = sub.add_parser("health", parents=[common], help="check that the server answers (exit 3 if not)")
    p.set_defaults(handler=cmd_health)
    p = sub.add_parser("capabilities", parents=[common], help="the models the server can train and sample")
    p.set_defaults(handler=cmd_capabilities)


def _once(fn: Any) -> Any:
    """A handler that opens a service, runs ``fn(service, ns, g)`` and exits 0."""

    async def handler(ns: argparse.Namespace, g: Globals) -> int:
        async def job(stop: trio.Event) -> int:
            async with connect(g) as service:
                return int(await fn(service, ns, g))

        return await run_job(job, graceful=False)

    return handler


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Any:
    def render(c: Console) -> None:
        t = Table(title=title)
        for col in columns:
            t.add_column(col)
        for row in rows:
            t.add_row(*["-" if v is None else str(v) for v in row])
        c.print(t)

    return render


# ----------------------------------------------------------------- checkpoints


@_once
async def cmd_checkpoints_list(service: Any, ns: argparse.Namespace, g: Globals) -> int:
    rest = service.create_rest_client()
    if ns.run:
        resp = await rest.list_checkpoints(ns.run)
    else:
        resp = await rest.list_user_checkpoints(limit=ns.limit)
    cks = list(resp.checkpoints)
    rows = [[c.tinker_path, c.checkpoint_type, c.time, c.size_bytes, c.public, c.expires_at] for c in cks]
    g.emit({"checkpoints": cks}, _table(f"{len(cks)} checkpoints", ["path", "type", "time", "bytes", "public", "expires"], rows))
    return EXIT_OK


@_once
async def cmd_checkpoints_simple(service: Any, ns: argparse.Namespace, g: Globals) -> int:
    rest = service.create_rest_client()
    done = []
    for path in ns.paths:
        if not path.startswith("tinker://"):
            raise UsageError(f"{path!r} is not a tinker:// path")
        if ns.op == "delete":
            await rest.delete_checkpoint_from_tinker_path(path)
        elif ns.op == "publish":
            await rest.publish_checkpoint_from_tinker_path(path)
        elif ns.op == "unpublish":
            await rest.unpublish_checkpoint_from_tinker_path(path)
        else:
            ttl: int | None
            if ns.ttl.lower() == "none":
                ttl = None
            else:
                try:
                    ttl = int(ns.ttl)
                except ValueError:
                    raise UsageError(f"ttl must be a number of seconds or 'none', got {ns.ttl!r}") from None
                if ttl <= 0:
                    raise UsageError("ttl must be positive (or 'none')")
            await rest.set_checkpoint_ttl_from_tinker_path(path, ttl)
        done.append(path)
    verb = {"delete": "deleted", "publish": "published", "unpublish": "unpublished", "ttl": "set the TTL of"}[ns.op]
    g.emit({"op": ns.op, "paths": done}, lambda c: [c.print(f"{verb} {p}") for p in done])
    return EXIT_OK


@_once
async def cmd_checkpoints_download(service: Any, ns: argparse.Namespace, g: Globals) -> int:
    from tinker_actors.clients import parse_tinker_path
    from tinker_actors.jobs.download import download_archive

    try:
        parsed = parse_tinker_path(ns.path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    name = f"{parsed.training_run_id}-{parsed.checkpoint_id.replace('/', '-')}"
    out_dir = ns.output or Path(name)
    archive = out_dir.parent / f"{out_dir.name}.tar.gz"
    rest = service.create_rest_client()
    signed = await rest.get_checkpoint_archive_url_from_tinker_path(ns.path)
    show_bar = not g.json and g.stderr.is_terminal
    bar = Progress(
        TextColumn("[bold]download"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=g.stderr, auto_refresh=False, transient=True, disable=not show_bar,
    )
    task = bar.add_task("download", total=None)

    def progress(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)
        bar.refresh()

    with bar:
        result = await download_archive(
            signed.url, archive, extract_to=None if ns.no_extract else out_dir, progress=progress
        )

    def human(c: Console) -> None:
        c.print(f"downloaded {ns.path}: {result.bytes} bytes, {result.members} files, sha256 {result.sha256[:16]}... (verified)")
        c.print(f"  archive  {result.path}")
        if result.extracted_to:
            c.print(f"  files    {result.extracted_to}")

    g.emit(result, human)
    return EXIT_OK


# ----------------------------------------------------------------- runs and sessions


@_once
async def cmd_runs_list(service: Any, ns: argparse.Namespace, g: Globals) -> int:
    resp = await service.create_rest_client().list_training_runs(limit=ns.limit, offset=ns.offset)
    runs = list(resp.training_runs)
    rows = [[r.training_run_id, r.base_model, r.lora_rank, r.last_request_time,
             r.last_checkpoint.tinker_path if r.last_checkpoint else None] for r in runs]
    g.emit(resp, _table(f"{len(runs)} training runs", ["run", "base model", "rank", "last request", "last checkpoint"], rows))
    return EXIT_OK


@_once
async def cmd_runs_show(service: Any, ns: argparse.Namespace, g: Globals) -> int:
    rest = service.create_rest_client()
    if ns.run_id.startswith("tinker://"):
        run = await rest.get_training_run_by_tinker_path(ns.run_id)
    else:
        run = await rest.get_training_run(ns.run_id)
    cks = (await rest.list_checkpoints(run.training_run_id)).checkpoints

    def human(c: Console) -> None:
        c.print(f"[bold]{run.training_run_id}[/]  base {run.base_model}  rank {run.lora_rank}  owner {run.model_owner}")
        c.print(f"  last request  {run.last_request_time}")
        _table(f"{len(cks)} checkpoints", ["path", "type", "time", "public", "expires"],
               [[k.tinker_path, k.checkpoint_type, k.time, k.public, k.expires_at] for k in cks])(c)

    g.emit({"run": run, "checkpoints": cks}, human)
    return EXIT_OK


@_once
async def cmd_sessions_list(service: Any, ns: argparse.Namespace, g: Globals) -> int:
    resp = await service.create_rest_client().list_sessions(limit=ns.limit, offset=ns.offset)
    g.emit(resp, lambda c: [c.print(s) for s in resp.sessions] or c.print("no sessions"))
    return EXIT_OK


@_once
async def cmd_sessions_show(service: Any, ns: argparse.Namespace, g: Globals) -> int:
    resp = await service.create_rest_client().get_session(ns.session_id)

    def human(c: Console) -> None:
        c.print(f"[bold]{ns.session_id}[/]" + (f"  ({resp.display_name})" if resp.display_name else ""))
        c.print(f"  training runs  {', '.join(resp.training_run_ids) or '-'}")
        c.print(f"  samplers       {', '.join(resp.sampler_ids) or '-'}")

    g.emit({"session_id": ns.session_id, **_builtins(resp)}, human)
    return EXIT_OK


def _builtins(obj: Any) -> dict[str, Any]:
    import msgspec

    out = msgspec.to_builtins(obj)
    return out if isinstance(out, dict) else {"value": out}


# ----------------------------------------------------------------- health, capabilities


async def cmd_health(ns: argparse.Namespace, g: Globals) -> int:
    # No session: a health check must not create server state.
    async def job(stop: trio.Event) -> int:
        async with base_url_for(g) as url:
            endpoint = f"{url.rstrip('/')}/api/v1/healthz"
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    resp = await http.get(endpoint, headers={"X-API-Key": g.key})
            except httpx.TransportError as exc:
                raise APIConnectionError(str(exc) or type(exc).__name__, endpoint="GET /api/v1/healthz") from None
            if resp.status_code >= 400:
                raise status_error(resp.status_code)(resp.text[:300], status_code=resp.status_code, endpoint="GET /api/v1/healthz")
            body = resp.json() if resp.content else {}
            ok = body.get("status") == "ok"
            g.emit({"base_url": url, **body}, lambda c: c.print(f"{url}: {body.get('status', 'unknown')}"))
            return EXIT_OK if ok else EXIT_FAILED

    return await run_job(job, graceful=False)


@_once
async def cmd_capabilities(service: Any, ns: argparse.Namespace, g: Globals) -> int:
    caps = await service.get_server_capabilities()
    models = [_builtins(m) for m in caps.supported_models]
    cols = sorted({k for m in models for k in m})
    cols = ["model_name", *[c for c in cols if c != "model_name"]]
    g.emit(caps, _table(f"{len(models)} supported models", cols, [[m.get(c) for c in cols] for m in models]))
    return EXIT_OK
