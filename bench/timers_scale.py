"""Timers at scale: timers are rows, so an idle sweep costs the same at 10,000 and 1,000,000.

Three figures, on SQLite and on the local PostgreSQL:

1. Idle sweep. N open blockers in `supervised`, each with the four pending timers the engine
   plans on entering that state (two deadline reminders, the feedback reminder, the deadline),
   none due. Bulk-loaded (COPY on PostgreSQL, executemany on SQLite), then ANALYZE. A fresh
   probe process (the shape of a `duban sweep` worker) times 200 calls each of `claim_due`
   and `next_due` inside an open transaction, and of a whole `sweep_once` (its own
   transaction), with `now` before every due moment; and reports its RSS. Once at 10,000
   blockers, once at N.
2. Burst. 100,000 deadlines falling due at once, each escalated by `sweep_once` in one
   process: state, event, escalation entry and outbox row per blocker (a webhook channel on
   the escalation's receiver, the city taskforce, and on the responsible county).
   On PostgreSQL once more with `--sweepers` (default 2) sweeper processes at once, as
   replicas would run. A short cProfile of 1,000 of them says what dominates.
3. The naive design: APScheduler 3, BackgroundScheduler, one `date` job per deadline in an
   SQLAlchemyJobStore (SQLite file); the job only records the blocker id. Scheduling time,
   firing time and memory, once with APScheduler's default misfire_grace_time (1 s) on
   10,000 jobs, and once with misfire_grace_time=None on 100,000.

    python -m bench.timers_scale [--n 1000000] [--burst 100000] [--jobs 100000]
                                 [--sweepers 2] [--backends sqlite,postgres]
                                 [--skip idle,burst,aps,profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.common import fresh_database, machine

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
ENTERED = datetime(2026, 3, 16, 10, 0, tzinfo=TZ)  # every blocker entered `supervised` here
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=TZ)  # the sweeps' "now"
OVERDUE = date(2026, 3, 17)  # the burst's deadline: due 03-17 23:59:59, before NOW
CHUNK = 50_000

BLOCKER_COLS = (
    "id", "project_id", "title", "description", "category", "authority_level", "source",
    "workflow", "state", "escalation_level", "unit_id", "assisting_unit_ids", "deadline",
    "due_at", "complexity", "return_count", "failed_verifications", "version", "last_seq",
    "last_hash", "warnings", "created_at", "updated_at",
)  # fmt: skip
TIMER_COLS = ("blocker_id", "kind", "step", "due_at", "status", "urgent", "payload")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fmt_n(n: int) -> str:
    return f"{n:,}"


def short_n(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return fmt_n(n)


def fmt_mb(value: float) -> str:
    return f"{value:.0f} MB"


# --------------------------------------------------------------------------- seeding


def make_context(db, now: datetime):
    from workflows.clock import ManualClock
    from workflows.context import EngineContext

    return EngineContext(clock=ManualClock(now), lock_rows=db.is_postgres)


def setup_world(db) -> tuple[int, int]:
    """Units with the ladder's tags, webhook channels on the county and the taskforce, a project."""
    from service.models import Channel, Project, Unit

    with db.unit_of_work() as s:
        top = Unit(code="xx", name="市政府", level="city", kind="government", path="/",
                   tags=["city_government"])  # fmt: skip
        s.add(top)
        s.flush()
        top.path = f"/{top.id}/"
        taskforce = Unit(code="xx-zb", name="市综合专班", level="city", kind="taskforce",
                         parent_id=top.id, path="/", tags=["general_taskforce"])  # fmt: skip
        county = Unit(code="wy", name="原阳县人民政府", level="county", kind="government",
                      parent_id=top.id, path="/")  # fmt: skip
        s.add_all([taskforce, county])
        s.flush()
        taskforce.path = f"/{top.id}/{taskforce.id}/"
        county.path = f"/{top.id}/{county.id}/"
        for unit in (taskforce, county):
            s.add(Channel(unit_id=unit.id, kind="webhook", url="http://127.0.0.1:9/x", secret="s"))
        project = Project(code="P1", name="项目P1", category="省市重点", county_unit_id=county.id)
        s.add(project)
        s.flush()
        return county.id, project.id


def timer_templates(db, ctx, deadlines: list[date]) -> dict[date, tuple[datetime, list[tuple]]]:
    """Per distinct deadline: the blocker's due_at, and what the engine's planner plans on
    entering `supervised` (kind, step, due_at, urgent, payload)."""
    from service.models import Blocker
    from workflows.timers import plan_state_timers

    with db.unit_of_work(readonly=True) as s:
        cal = ctx.calendars.get(s)
    definition = ctx.workflows["blocker"].definition
    at = ENTERED.astimezone(UTC)
    out = {}
    for d in deadlines:
        due_at = cal.end_of_day(d)
        model = Blocker(id=0, project_id=0, title="", category="", deadline=d, due_at=due_at)
        out[d] = (
            due_at,
            [
                (t["kind"], t["step"], t["due_at"], t["urgent"], json.dumps(t["payload"]))
                for t in plan_state_timers(definition, cal, model, "supervised", at, 0, at)
            ],
        )
    return out


class BulkWriter:
    """Rows straight into the tables: COPY on PostgreSQL, executemany on SQLite."""

    def __init__(self, url: str) -> None:
        self.postgres = url.startswith("postgresql")
        if self.postgres:
            import psycopg

            self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        else:
            import sqlite3

            self.conn = sqlite3.connect(url.split(":///", 1)[1])
            self.conn.execute("PRAGMA journal_mode=WAL")

    def ts(self, value: datetime):
        if self.postgres:
            return value
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def write(self, table: str, cols: tuple[str, ...], rows) -> None:
        if self.postgres:
            with (
                self.conn.cursor() as cur,
                cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(cols))
            self.conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)
        self.conn.commit()

    def finish(self) -> None:
        if self.postgres:
            self.conn.execute(
                "SELECT setval(pg_get_serial_sequence('blockers', 'id'), (SELECT max(id) FROM blockers))"
            )
            self.conn.commit()
            self.conn.autocommit = True
            self.conn.execute("VACUUM ANALYZE blockers")
            self.conn.execute("VACUUM ANALYZE timers")
        else:
            self.conn.execute("ANALYZE")
            self.conn.commit()
        self.conn.close()


def seed(
    url: str, unit_id: int, project_id: int, templates: dict[date, tuple[datetime, list[tuple]]],
    deadlines: list[date], first: int, count: int,
) -> float:  # fmt: skip
    """Blockers first..first+count-1 in `supervised`, deadline i-th of `deadlines` (cycled),
    each with its planned timers. Returns the seconds taken."""
    start = time.perf_counter()
    writer = BulkWriter(url)
    created = writer.ts(ENTERED - timedelta(hours=2))
    entered = writer.ts(ENTERED)
    due = {d: writer.ts(templates[d][0]) for d in deadlines}
    tmpl = {
        d: [
            (k, st, writer.ts(at), urgent if writer.postgres else int(urgent), p)
            for k, st, at, urgent, p in templates[d][1]
        ]
        for d in deadlines
    }
    for lo in range(first, first + count, CHUNK):
        hi = min(lo + CHUNK, first + count)
        blockers, timers = [], []
        for bid in range(lo, hi):
            d = deadlines[bid % len(deadlines)]
            blockers.append(
                (bid, project_id, f"用地手续办理滞后 {bid}", "", "用地", "county", "admin",
                 "blocker", "supervised", 0, unit_id, "[]", d if writer.postgres else d.isoformat(),
                 due[d], "ordinary", 0, 0, 1, 0, "", "[]", created, entered)
            )  # fmt: skip
            timers.extend((bid, k, st, at, "pending", u, p) for k, st, at, u, p in tmpl[d])
        writer.write("blockers", BLOCKER_COLS, blockers)
        writer.write("timers", TIMER_COLS, timers)
    writer.finish()
    return time.perf_counter() - start


def seed_burst(db, ctx, url: str, m: int) -> tuple[float, dict]:
    """The world, and blockers 1..m whose deadline passed before NOW, each with its planned
    timers; returns (seconds taken, the timer templates)."""
    unit_id, project_id = setup_world(db)
    templates = timer_templates(db, ctx, [OVERDUE])
    return seed(url, unit_id, project_id, templates, [OVERDUE], 1, m), templates


def seed_future(db, ctx, unit_id, project_id, first, count) -> tuple[float, int]:
    """Open blockers with deadlines spread over the next year, nothing due at NOW."""
    deadlines = [date(2026, 6, 1) + timedelta(days=i) for i in range(0, 360, 3)]
    templates = timer_templates(db, ctx, deadlines)
    assert all(t[2] > NOW for _, ts in templates.values() for t in ts)
    seconds = seed(db.url, unit_id, project_id, templates, deadlines, first, count)
    per = [len(templates[d][1]) for d in deadlines]
    return seconds, sum(per[i % len(deadlines)] for i in range(first, first + count))


# --------------------------------------------------------------------------- subprocesses


def run_child(*args: str, timeout: float = 7200) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.timers_scale", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_probe(url: str, calls: int) -> dict:
    """A fresh sweeper-shaped process: what an idle sweep costs, and its memory."""
    from service.db import Database
    from workflows.sweep import claim_due, sweep_once
    from workflows.timers import next_due

    db = Database(url)
    ctx = make_context(db, NOW)
    now = NOW.astimezone(UTC)
    for _ in range(10):
        assert sweep_once(db, ctx, now=now) == (0, 0)

    def median_us(fn) -> float:
        samples = []
        for _ in range(calls):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        return statistics.median(samples) * 1e6

    sweep = median_us(lambda: sweep_once(db, ctx, now=now))
    with db.unit_of_work() as s:
        claim = median_us(lambda: claim_due(s, ctx, now, 500))
        assert claim_due(s, ctx, now, 500) == []
    with db.unit_of_work(readonly=True) as s:
        nxt = median_us(lambda: next_due(s, until=now))
        assert next_due(s, until=now) is None
    plan = ""
    with db.write_engine.connect() as conn:
        from sqlalchemy import text

        if db.is_postgres:
            rows = conn.execute(
                text(
                    "EXPLAIN SELECT * FROM timers WHERE status = 'pending' AND due_at <= :now "
                    "ORDER BY due_at, id LIMIT 500 FOR UPDATE SKIP LOCKED"
                ),
                {"now": now},
            ).all()
        else:
            rows = conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT * FROM timers WHERE status = 'pending' AND "
                "due_at <= :now ORDER BY due_at, id LIMIT 500"),
                {"now": now.strftime("%Y-%m-%d %H:%M:%S.%f")}).all()  # fmt: skip
        plan = " | ".join(str(r[-1]) for r in rows)
    db.dispose()
    return {"sweep_us": sweep, "claim_us": claim, "next_us": nxt, "rss_mb": rss_mb(),
            "peak_mb": peak_mb(), "plan": plan}  # fmt: skip


def child_burst(url: str, batch: int) -> dict:
    """Fire every due deadline with sweep_once, in this process."""
    from sqlalchemy import func, select

    from service.db import Database
    from service.models import Blocker, Escalation, Event, Notification
    from workflows.sweep import sweep_once

    db = Database(url)
    ctx = make_context(db, NOW)
    base_rss = rss_mb()
    started = time.time()
    t = time.perf_counter()
    fired, settled = sweep_once(db, ctx, now=NOW.astimezone(UTC), batch=batch)
    seconds = time.perf_counter() - t
    ended = time.time()
    with db.unit_of_work(readonly=True) as s:
        counts = {
            "overdue_state": s.scalar(select(func.count()).select_from(Blocker)
                                      .where(Blocker.state == "deadline")),
            "events": s.scalar(select(func.count()).select_from(Event)
                               .where(Event.action == "deadline_passed")),
            "escalations": s.scalar(select(func.count()).select_from(Escalation)),
            "outbox": s.scalar(select(func.count()).select_from(Notification)),
        }  # fmt: skip
    db.dispose()
    return {"fired": fired, "settled": settled, "seconds": seconds, **counts,
            "started": started, "ended": ended,
            "rss_before_mb": base_rss, "peak_mb": peak_mb()}  # fmt: skip


def record(blocker_id: int) -> None:
    """The APScheduler job: only note that the deadline fired."""
    RECORDED.append(blocker_id)


RECORDED: list[int] = []


def child_aps(n: int, default_grace: bool) -> dict:
    """APScheduler 3: one `date` job per deadline in an SQLAlchemyJobStore (SQLite file)."""
    import logging

    from apscheduler.events import EVENT_JOB_MISSED
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    logging.basicConfig(level=logging.ERROR)
    missed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        defaults = {} if default_grace else {"misfire_grace_time": None}

        def scheduler(path: str) -> BackgroundScheduler:
            store = SQLAlchemyJobStore(url=f"sqlite:///{tmp}/{path}")
            return BackgroundScheduler(jobstores={"default": store}, job_defaults=defaults,
                                       timezone=UTC)  # fmt: skip

        # A pilot on a throwaway store sets the due moment just after scheduling will end.
        pilot = scheduler("pilot.sqlite")
        pilot.start(paused=True)
        far = datetime.now(UTC) + timedelta(days=1)
        t = time.perf_counter()
        for i in range(500):
            pilot.add_job(record, "date", run_date=far, args=[i], id=f"p{i}")
        per_job = (time.perf_counter() - t) / 500
        pilot.shutdown(wait=False)

        sched = scheduler("jobs.sqlite")
        sched.add_listener(lambda ev: missed.append(ev.job_id), EVENT_JOB_MISSED)
        sched.start()
        rss_start = rss_mb()
        due = datetime.now(UTC) + timedelta(seconds=per_job * n * 1.6 + 10)
        t = time.perf_counter()
        for i in range(n):
            sched.add_job(record, "date", run_date=due, args=[i], id=f"deadline-{i}",
                          replace_existing=False)  # fmt: skip
        scheduling = time.perf_counter() - t
        late_start = datetime.now(UTC) > due
        rss_scheduled = rss_mb()
        while datetime.now(UTC) < due:
            time.sleep(0.01)
        t = time.perf_counter()
        while len(RECORDED) + len(missed) < n and time.perf_counter() - t < 3600:
            time.sleep(0.05)
        firing = time.perf_counter() - t
        left = len(sched.get_jobs())
        sched.shutdown(wait=True)
    return {"n": n, "scheduling": scheduling, "firing": firing, "recorded": len(RECORDED),
            "missed": len(missed), "left": left, "late_start": late_start,
            "rss_start_mb": rss_start, "rss_scheduled_mb": rss_scheduled, "peak_mb": peak_mb()}  # fmt: skip


# --------------------------------------------------------------------------- the figures


def idle(kind: str, n: int, calls: int) -> dict:
    from service.db import Database

    with fresh_database(kind) as url:
        db = Database(url)
        ctx = make_context(db, NOW)
        unit_id, project_id = setup_world(db)
        small = min(10_000, n)
        s1, t1 = seed_future(db, ctx, unit_id, project_id, 1, small)
        at_small = run_child("--child-probe", url, str(calls))
        s2, t2 = seed_future(db, ctx, unit_id, project_id, 1 + small, n - small)
        at_n = run_child("--child-probe", url, str(calls))
        db.dispose()
    return {"small": small, "n": n, "timers": t1 + t2, "seed_s": s1 + s2,
            "at_small": at_small, "at_n": at_n}  # fmt: skip


def run_children(count: int, *args: str, timeout: float = 7200) -> list[dict]:
    """`count` copies of a child at once (several sweepers against one database)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.timers_scale", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"child {args[0]} failed:\n{stderr[-4000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def burst(kind: str, m: int, batch: int, sweepers: int = 1) -> dict:
    from service.db import Database

    with fresh_database(kind) as url:
        db = Database(url)
        ctx = make_context(db, NOW)
        seconds, templates = seed_burst(db, ctx, url, m)
        kinds = sorted(t[0] for t in templates[OVERDUE][1])
        assert [t[0] for t in templates[OVERDUE][1] if t[2] <= NOW] == ["deadline"], kinds
        db.dispose()
        if sweepers == 1:
            result = run_child("--child-burst", url, str(batch))
        else:
            # Each sweeper process's own clock starts once it has imported and connected;
            # the burst lasts from the first one's start to the last one's end.
            runs = run_children(sweepers, "--child-burst", url, str(batch))
            result = {
                **max(runs, key=lambda r: r["ended"]),
                "fired": sum(r["fired"] for r in runs),
                "seconds": max(r["ended"] for r in runs) - min(r["started"] for r in runs),
                "per_sweeper": [r["fired"] for r in runs],
            }
    return {"m": m, "batch": batch, "seed_s": seconds, "kinds": kinds, "sweepers": sweepers,
            **result}  # fmt: skip


def profile(kind: str, m: int = 1000) -> str:
    """cProfile of firing m deadlines; SQL statements sent."""
    from sqlalchemy import event

    from service.db import Database
    from workflows.sweep import sweep_once

    with fresh_database(kind) as url:
        db = Database(url)
        ctx = make_context(db, NOW)
        seed_burst(db, ctx, url, m)
        statements = [0]

        @event.listens_for(db.write_engine, "before_cursor_execute")
        def _count(*_args) -> None:
            statements[0] += 1

        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        fired, _ = sweep_once(db, ctx, now=NOW.astimezone(UTC), batch=500)
        prof.disable()
        seconds = time.perf_counter() - t
        db.dispose()
    stats = pstats.Stats(prof)
    total = stats.total_tt
    by_file: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        if "psycopg" in filename or "sqlite3" in filename or filename == "~":
            group = "driver + database round trips"
        elif "sqlalchemy" in filename or "sqlmodel" in filename or "pydantic" in filename:
            group = "SQLAlchemy/SQLModel ORM"
        elif "/workflows/" in filename or "/service/" in filename:
            group = "duban engine code"
        else:
            group = "other (json, hashlib, transitions, stdlib)"
        by_file[group] = by_file.get(group, 0.0) + tt
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(r"workflows/", 12)
    top = [
        line.strip() for line in buf.getvalue().splitlines()
        if "workflows/" in line and not line.strip().startswith("List")
    ][:12]  # fmt: skip
    lines = [
        f"  profile {kind}: {fired} deadlines in {seconds:.2f} s under cProfile, "
        f"{statements[0]} SQL statements in all ({statements[0] / max(fired, 1):.2f} per timer, "
        f"plus one COPY per table written on PostgreSQL); self time by layer: "
        + ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(by_file.items(), key=lambda x: -x[1]))
    ]
    lines += ["    " + line for line in top]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="open blockers (idle sweep)")
    parser.add_argument("--burst", type=int, default=100_000, help="deadlines due at once")
    parser.add_argument("--batch", type=int, default=1000, help="sweep batch for the burst")
    parser.add_argument(
        "--sweepers", type=int, default=2, help="also burst with this many sweeper processes (PG)"
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="APScheduler jobs")
    parser.add_argument(
        "--grace-jobs",
        type=int,
        default=10_000,
        help="APScheduler jobs under the default misfire_grace_time",
    )
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--skip", default="", help="comma list of idle,burst,profile,aps")
    parser.add_argument("--child-probe", nargs=2, metavar=("URL", "CALLS"), help=argparse.SUPPRESS)
    parser.add_argument("--child-burst", nargs=2, metavar=("URL", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--child-aps", nargs=2, metavar=("N", "DEFAULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_probe:
        print(json.dumps(child_probe(args.child_probe[0], int(args.child_probe[1]))))
        return
    if args.child_burst:
        print(json.dumps(child_burst(args.child_burst[0], int(args.child_burst[1]))))
        return
    if args.child_aps:
        print(json.dumps(child_aps(int(args.child_aps[0]), args.child_aps[1] == "1")))
        return

    skip = set(filter(None, args.skip.split(",")))
    backends = [b for b in args.backends.split(",") if b]
    print(f"# timers at scale ({machine()})")
    sweep_sqlite: dict | None = None
    for kind in backends if "idle" not in skip else []:
        r = idle(kind, args.n, args.calls)
        a, b = r["at_small"], r["at_n"]
        change = (b["rss_mb"] - a["rss_mb"]) / a["rss_mb"]
        print(
            f"timers_scale {kind}: idle sweep (whole sweep_once) median {b['sweep_us']:.0f} µs at {fmt_n(r['n'])} "
            f"blockers; RSS {short_n(r['small'])}={fmt_mb(a['rss_mb'])} "
            f"{short_n(r['n'])}={fmt_mb(b['rss_mb'])} "
            f"({change:+.1%})"
        )
        print(
            f"  {kind}: claim_due {a['claim_us']:.0f} → {b['claim_us']:.0f} µs, next_due "
            f"{a['next_us']:.0f} → {b['next_us']:.0f} µs, whole sweep_once (own transaction) "
            f"{a['sweep_us']:.0f} → {b['sweep_us']:.0f} µs, from {fmt_n(r['small'])} to "
            f"{fmt_n(r['n'])} blockers ({fmt_n(r['timers'])} pending timers, seeded in "
            f"{r['seed_s']:.0f} s); medians of {args.calls}; claim plan: {b['plan']}"
        )
        sys.stdout.flush()
    for kind in backends if "burst" not in skip else []:
        r = burst(kind, args.burst, args.batch)
        ok = r["fired"] == r["overdue_state"] == r["events"] == r["escalations"] == r["m"]
        print(
            f"timers_scale {kind}: {fmt_n(r['m'])} deadlines due at once escalated by sweep_once "
            f"(batch {r['batch']}) in {r['seconds']:.1f} s = {r['m'] / r['seconds']:.0f}/s; "
            f"{fmt_n(r['overdue_state'])} overdue, {fmt_n(r['events'])} events, "
            f"{fmt_n(r['escalations'])} escalations, {fmt_n(r['outbox'])} outbox rows"
            f"{'' if ok else ' (MISMATCH)'}; peak RSS {fmt_mb(r['peak_mb'])}; "
            f"rows bulk-written in {r['seed_s']:.1f} s"
        )
        if kind == "sqlite":
            sweep_sqlite = r
        sys.stdout.flush()
        if kind == "postgres" and args.sweepers > 1:
            r = burst(kind, args.burst, args.batch, args.sweepers)
            ok = r["fired"] == r["overdue_state"] == r["events"] == r["escalations"] == r["m"]
            print(
                f"timers_scale {kind}: the same with {r['sweepers']} sweeper processes at once: "
                f"{r['seconds']:.1f} s = {r['m'] / r['seconds']:.0f}/s; fired "
                f"{' + '.join(fmt_n(n) for n in r['per_sweeper'])}, {fmt_n(r['events'])} "
                f"events, {fmt_n(r['escalations'])} escalations"
                f"{'' if ok else ' (MISMATCH: a timer fired twice or not at all)'}"
            )
            sys.stdout.flush()
    for kind in backends if "profile" not in skip else []:
        print(profile(kind))
        sys.stdout.flush()
    if "aps" not in skip:
        g = run_child("--child-aps", str(args.grace_jobs), "1")
        print(
            f"timers_scale apscheduler (default misfire_grace_time=1 s): {fmt_n(g['n'])} date "
            f"jobs scheduled in {g['scheduling']:.1f} s; when all fell due at once "
            f"{fmt_n(g['recorded'])} ran and {fmt_n(g['missed'])} were skipped as missed "
            f"(in {g['firing']:.1f} s)"
        )
        r = run_child("--child-aps", str(args.jobs), "0")
        rate = r["n"] / r["firing"] if r["firing"] else float("inf")
        line = (
            f"timers_scale apscheduler (misfire_grace_time=None): {fmt_n(r['n'])} date jobs "
            f"scheduled in {r['scheduling']:.1f} s ({r['scheduling'] / r['n'] * 1e3:.2f} ms each), "
            f"fired in {r['firing']:.1f} s ({rate:.0f}/s, {fmt_n(r['recorded'])} recorded, "
            f"{r['left']} left); RSS {fmt_mb(r['rss_start_mb'])} → "
            f"{fmt_mb(r['rss_scheduled_mb'])} scheduled, peak {fmt_mb(r['peak_mb'])}"
        )
        if r["late_start"]:
            line += " (scheduling overran the due moment)"
        print(line)
        if sweep_sqlite is not None and sweep_sqlite["m"] == r["n"]:
            print(
                f"  ratio apscheduler/sweep on SQLite, {fmt_n(r['n'])}: firing "
                f"{r['firing'] / sweep_sqlite['seconds']:.2f}x the sweep's time (the job only "
                f"records an id; the sweep escalates), scheduling "
                f"{r['scheduling'] / sweep_sqlite['seed_s']:.0f}x the sweep's bulk row write, "
                f"peak memory {r['peak_mb'] / sweep_sqlite['peak_mb']:.2f}x"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
