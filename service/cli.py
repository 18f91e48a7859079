"""The `duban` command: serve, db upgrade, audit verify, clock and calendar admin."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

import psycopg
from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from service.failures import FailureLog
from service.settings import (
    DEFAULT_SQLITE_URL,
    BackgroundSettings,
    Settings,
    check_database_url,
)


def _settings(kind: type[Settings] = Settings) -> Settings:
    """The settings from the environment, or exit 2 naming each variable that is wrong."""
    from workflows.definition import load_all

    try:
        settings = kind()
    except ValidationError as exc:
        for error in exc.errors():
            message = str(error.get("msg", "")).removeprefix("Value error, ")
            field = ".".join(str(p) for p in error.get("loc", ()))
            where = f"DUBAN_{field.upper()}: " if field else ""
            print(f"duban: configuration refused: {where}{message}", file=sys.stderr)
        raise SystemExit(2) from None
    known = sorted(load_all())
    if settings.workflow not in known:
        print(
            f"duban: configuration refused: DUBAN_WORKFLOW: there is no workflow definition "
            f"{settings.workflow!r}; use one of {', '.join(known)}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    logging.getLogger().setLevel(settings.log_level.upper())
    return settings


def _upgrade(url: str, revision: str = "head") -> None:
    from service import migrations

    try:
        migrations.upgrade(url, revision)
    except (migrations.SchemaNewer, migrations.SchemaUnknown) as exc:
        print(f"duban: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _stop_on_signals() -> threading.Event:
    """An event that SIGTERM or SIGINT sets: a worker finishes what it holds, then exits."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.jobs import Jobs

    if args.workers is not None:
        os.environ["DUBAN_WORKERS"] = str(args.workers)  # validated with the rest below
    settings = _settings()
    if not args.no_migrate:
        _upgrade(settings.database_url)
    _announce(settings, args.host, args.port)
    options = {
        "host": args.host,
        "port": args.port,
        "log_level": settings.log_level,
        "access_log": False,
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    # Several HTTP processes; the timer sweep and the dispatcher run once, in this one.
    jobs = Jobs(create_app(settings, background=False))
    jobs.start()
    try:
        uvicorn.run("service.app:worker_app", factory=True, workers=settings.workers, **options)
    finally:
        jobs.stop()
        jobs.app.state.db.dispose()
    return 0


def _announce(settings: Settings, host: str, port: int) -> None:
    """One line for whoever started it: where, on which database, with which clock; and a
    warning when no key can administer it (the default SQLite needs no DUBAN_ADMIN_KEY)."""
    where = settings.database_url.split(":///", 1)[-1] if settings.is_sqlite else ""
    database = f"SQLite {Path(where).resolve()}" if where else settings.redacted_database_url
    log = logging.getLogger("duban")
    log.info("serving http://%s:%s with %s, %s clock", host, port, database, settings.clock)
    if not settings.admin_key:
        log.warning(
            "DUBAN_ADMIN_KEY is not set: only API keys already in the database work; set it "
            "to create units and keys (make run sets a development key)"
        )


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from service import migrations

    url = args.url or os.environ.get("DUBAN_DATABASE_URL") or DEFAULT_SQLITE_URL
    try:
        check_database_url(url)
    except ValueError as exc:
        print(f"duban: configuration refused: DUBAN_DATABASE_URL: {exc}", file=sys.stderr)
        return 2
    _upgrade(url, args.revision)
    print(
        f"duban: database at {migrations.head_revision(url) if args.revision == 'head' else args.revision}"
    )
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from service.db import Database
    from workflows.audit import verify_all

    settings = _settings(BackgroundSettings)
    db = Database(settings.database_url)
    broken = 0
    with db.unit_of_work(readonly=True) as session:
        for link in verify_all(session):
            broken += 1
            print(f"BROKEN  {link}")
    if broken:
        print(f"duban audit: {broken} broken chain(s)", file=sys.stderr)
        return 1
    print("duban audit: every chain verifies")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run only the timer sweep (no API): for extra sweepers or a separate worker."""
    from service.app import build_context
    from service.db import Database
    from workflows.sweep import sweep_once

    settings = _settings(BackgroundSettings)
    db = Database(settings.database_url)
    ctx = build_context(settings, db)
    log = logging.getLogger("duban.sweep")
    stop = _stop_on_signals()
    if not args.once:
        log.info(
            "sweeping timers every %g s (%s)",
            settings.sweep_interval_s,
            settings.redacted_database_url,
        )
    fired_total = 0
    failures = FailureLog(log, "timer sweep")
    while not stop.is_set():
        try:
            fired, _ = sweep_once(
                db, ctx, batch=args.batch or settings.sweep_batch, naive=args.naive
            )
        except Exception:
            if args.once:
                raise  # a one-off run that did nothing must not look like success
            # A lost connection or a deadlock victim: the claimed timers stay pending.
            failures.failed()
            fired = 0
        else:
            failures.succeeded()
        fired_total += fired
        if fired:
            log.info("fired %d timers (%d in all)", fired, fired_total)
        if args.once:
            print(f"duban sweep: fired {fired_total}")
            return 0
        stop.wait(settings.sweep_interval_s)
    return 0


def cmd_dispatch(args: argparse.Namespace) -> int:
    """Run only the notification dispatcher (several may run against PostgreSQL)."""
    from notifiers.dispatcher import Dispatcher
    from service.app import build_context
    from service.db import Database

    settings = _settings(BackgroundSettings)
    db = Database(settings.database_url)
    ctx = build_context(settings, db)
    dispatcher = Dispatcher(
        db,
        allowed_hosts=settings.allowed_hosts,
        base_url=settings.public_url,
        business_now=ctx.clock.now,
    )
    if args.once:
        sent = dispatcher.dispatch_once()
        print(f"duban dispatch: {sent} deliveries attempted")
        return 0
    stop = _stop_on_signals()
    logging.getLogger("duban.dispatch").info(
        "dispatching notifications (%s)", settings.redacted_database_url
    )
    # On SIGTERM: claim nothing more, and record what is on the wire before exiting, so
    # that a message a robot took is not sent again by the next dispatcher.
    dispatcher.run_forever(stop)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.demo.run import run_demo

    run_demo(
        args.host, args.port, Path(args.database), args.day_seconds, args.prefill_days, args.seed
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="duban", description="督办 duban: the closed loop on project blockers"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API, the timer sweep and the dispatcher")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="HTTP worker processes (default DUBAN_WORKERS, 1); timers and dispatch run once",
    )
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply Alembic migrations")
    upgrade.add_argument("--revision", default="head")
    upgrade.add_argument("--url", default=None, help="database URL (default DUBAN_DATABASE_URL)")
    upgrade.set_defaults(func=cmd_db_upgrade)

    audit = sub.add_parser("audit", help="the tamper-evident timeline")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check every blocker's hash chain")
    verify.set_defaults(func=cmd_audit_verify)
    sweep = sub.add_parser("sweep", help="run only the timer sweep (extra worker)")
    sweep.add_argument("--once", action="store_true", help="sweep what is due now, then exit")
    sweep.add_argument("--batch", type=int, default=None)
    sweep.add_argument(
        "--naive", action="store_true", help=argparse.SUPPRESS
    )  # fault-test control run
    sweep.set_defaults(func=cmd_sweep)

    dispatch = sub.add_parser("dispatch", help="run only the notification dispatcher")
    dispatch.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
    dispatch.set_defaults(func=cmd_dispatch)

    demo = sub.add_parser(
        "demo", help="a realistic city on the simulation clock, with a chat inbox"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--database", default="var/demo.db", help="SQLite file, recreated on every start"
    )
    demo.add_argument(
        "--day-seconds", type=float, default=5.0, help="real seconds per simulated working day"
    )
    demo.add_argument(
        "--prefill-days", type=int, default=18, help="working days simulated before serving"
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulation")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("transitions", "httpx", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ArgumentError, NoSuchModuleError) as exc:
        print(
            f"duban: DUBAN_DATABASE_URL is not a database URL this can use: {exc}", file=sys.stderr
        )
    except (DBAPIError, psycopg.Error, sqlite3.Error) as exc:  # down, unreachable, refusing
        cause = getattr(exc, "orig", None) or exc
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        print(f"duban: cannot use the database: {reason}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
