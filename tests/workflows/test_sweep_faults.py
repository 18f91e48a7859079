"""The timer sweep under faults, with real, separate `duban sweep` processes on PostgreSQL.

Blockers are seeded straight into the tables in the shape the engine leaves them after
create → assign → acknowledge: state `supervised`, a deadline, version 3 and three
hash-chained events, plus exactly the timers `workflows.timers.plan_state_timers` (the
engine's own planner) plans on entering `supervised`, so kinds, steps, due moments and
payloads are the engine's. Every unit has one webhook channel, so every deadline reminder
and every escalation also writes exactly one outbox row.

The sweepers run `.venv/bin/duban sweep` with DUBAN_CLOCK=manual and a fixed
DUBAN_CLOCK_START, so "now" stands still in every process. `outcome()` reads everything back
and `Outcome.faults()` lists each fault it finds: a timer step with two events, an event
whose timer is not `fired`, a fired timer without its event, a due timer still pending,
anything fired before its due moment, an escalation step taken twice, an outbox row too
many or too few, a broken hash chain. The naive control run shows it does see duplicates.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy import select, text

import workflows.sweep as sweep_module
from service.db import Database
from service.models import Blocker, Channel, Escalation, Event, Project, Timer, Unit
from tests.helpers import ADMIN_KEY, city, create_project, make_client, set_clock
from workflows.audit import GENESIS, chain_hash, verify_all
from workflows.clock import ManualClock
from workflows.context import EngineContext
from workflows.sweep import advance_clock, sweep_once
from workflows.timers import plan_state_timers

ROOT = Path(__file__).resolve().parents[2]
DUBAN = Path(sys.executable).with_name("duban")
TZ = ZoneInfo("Asia/Shanghai")
SYSTEM = "system:timer"
# The exactly-once runs: every blocker was acknowledged (entered `supervised`) on Monday
# 2026-03-16 10:00, and the sweepers' clock stands at Friday 2026-03-20 12:00.
ENTERED = datetime(2026, 3, 16, 10, 0, tzinfo=TZ)
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=TZ)
DEADLINE_ONLY = date(2026, 3, 17)  # due: `deadline` 03-17 23:59:59 (its reminders predate entry)
REMINDER_ONLY = date(2026, 3, 24)  # due: `remind_before_deadline_3` 03-19 09:00 only
BOTH = date(2026, 3, 18)  # due: `remind_before_deadline_1` 03-17 09:00 and `deadline` 03-18 end


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


# --------------------------------------------------------------------------------- seeding


@dataclass
class World:
    unit_id: int  # the responsible county government "wy"
    project_id: int


def seed_world(db: Database) -> World:
    """The ladder's units (tagged as tests.helpers.city tags them), a project, channels."""
    with db.unit_of_work() as s:
        top = Unit(
            code="xx",
            name="新乡市人民政府",
            level="city",
            kind="government",
            path="/",
            tags=["city_government"],
        )
        s.add(top)
        s.flush()
        top.path = f"/{top.id}/"
        taskforce = Unit(
            code="xx-zb",
            name="市综合专班",
            level="city",
            kind="taskforce",
            parent_id=top.id,
            path="/",
            tags=["general_taskforce"],
        )
        county = Unit(
            code="wy",
            name="原阳县人民政府",
            level="county",
            kind="government",
            parent_id=top.id,
            path="/",
        )
        s.add_all([taskforce, county])
        s.flush()
        taskforce.path = f"/{top.id}/{taskforce.id}/"
        county.path = f"/{top.id}/{county.id}/"
        project = Project(code="P1", name="项目P1", category="省市重点", county_unit_id=county.id)
        s.add(project)
        s.flush()
        world = World(unit_id=county.id, project_id=project.id)
    add_channels(db)
    return world


def world_of(db: Database) -> World:
    with db.unit_of_work(readonly=True) as s:
        unit = s.scalars(select(Unit).where(Unit.code == "wy")).one()
        project = s.scalars(select(Project).where(Project.code == "P1")).one()
        return World(unit_id=unit.id, project_id=project.id)


def add_channels(db: Database) -> None:
    with db.unit_of_work() as s:
        for unit in s.scalars(select(Unit)):
            s.add(Channel(unit_id=unit.id, kind="webhook", url="http://127.0.0.1:9/x", secret="s"))


def seed_blockers(
    db: Database, ctx: EngineContext, world: World, plan: list[tuple[date, datetime]]
) -> list[int]:
    """One blocker per (deadline, acknowledged-at), as the engine leaves it in `supervised`."""
    with db.unit_of_work() as s:
        cal = ctx.calendars.get(s)
        definition = ctx.workflows["blocker"].definition
        first = s.execute(text("SELECT coalesce(max(id), 0) + 1 FROM blockers")).scalar_one()
        planned: dict[tuple[date, datetime], list[dict]] = {}
        blockers, events, timers = [], [], []
        for i, (deadline, entered) in enumerate(plan):
            bid, due_at, at = first + i, cal.end_of_day(deadline), entered.astimezone(UTC)
            row = {
                "id": bid,
                "project_id": world.project_id,
                "title": f"用地手续办理滞后 {i}",
                "category": "用地",
                "workflow": "blocker",
                "state": "supervised",
                "unit_id": world.unit_id,
                "assisting_unit_ids": [],
                "deadline": deadline,
                "due_at": due_at,
                "warnings": [],
                "version": 3,
                "last_seq": 3,
                "created_at": at - timedelta(hours=2),
                "updated_at": at,
            }
            history = [
                ("admin", "create", None, "collected", at - timedelta(hours=2),
                 {"title": row["title"], "category": "用地"}),
                ("admin", "assign", "collected", "assigned", at - timedelta(hours=1),
                 {"unit": "wy", "deadline": {"date": deadline.isoformat()},
                  "deadline_date": deadline.isoformat(), "due_at": due_at.isoformat()}),
                ("key:wy", "acknowledge", "assigned", "supervised", at, {}),
            ]  # fmt: skip
            prev = GENESIS
            for seq, (actor, action, before, after, when, payload) in enumerate(history, 1):
                event = {
                    "blocker_id": bid, "seq": seq, "at": when, "actor": actor,
                    "api_key_id": None, "officer_id": None, "action": action,
                    "state_before": before, "state_after": after, "payload": payload,
                    "prev_hash": prev,
                }  # fmt: skip
                event["hash"] = prev = chain_hash(prev, SimpleNamespace(**event))
                events.append(event)
            row["last_hash"] = prev
            blockers.append(row)
            # The engine's planner, once per distinct (deadline, entered); only the id varies.
            if (deadline, entered) not in planned:
                model = Blocker(**row)
                planned[(deadline, entered)] = [
                    {k: v for k, v in t.items() if k != "blocker_id"}
                    for t in plan_state_timers(definition, cal, model, "supervised", at, 3, at)
                ]
            timers += [{**t, "blocker_id": bid} for t in planned[(deadline, entered)]]
        s.execute(Blocker.__table__.insert(), blockers)
        s.execute(Event.__table__.insert(), events)
        s.execute(Timer.__table__.insert(), timers)
        if db.is_postgres:
            sequence = "pg_get_serial_sequence('blockers', 'id')"
            s.execute(text(f"SELECT setval({sequence}, (SELECT max(id) FROM blockers))"))
    return [b["id"] for b in blockers]


def exactly_once_plan(deadline_only: int, reminder_only: int, both: int):
    return (
        [(DEADLINE_ONLY, ENTERED)] * deadline_only
        + [(REMINDER_ONLY, ENTERED)] * reminder_only
        + [(BOTH, ENTERED)] * both
    )


def backlog_plan(ctx: EngineContext, db: Database, n: int) -> list[tuple[date, datetime]]:
    """Blockers acknowledged on every working day of March, deadlines 2–12 working days on;
    every fifth has 30 working days, so its weekly feedback reminders (each planned when the
    one before fires) fall due one after another while the service is down."""
    with db.unit_of_work(readonly=True) as s:
        cal = ctx.calendars.get(s)
    days = [
        d for d in (date(2026, 3, 1) + timedelta(i) for i in range(31)) if cal.is_working_day(d)
    ]
    plan = []
    for i in range(n):
        day = days[i % len(days)]
        entered = datetime.combine(day, clock_time(10, i % 50), tzinfo=TZ)
        span = 30 if i % 5 == 0 else 2 + (i * 7) % 11
        plan.append((cal.add_working_days(day, span), entered))
    return plan


def make_ctx(db: Database, now: datetime) -> EngineContext:
    return EngineContext(clock=ManualClock(now), lock_rows=db.is_postgres)


# --------------------------------------------------------------------------------- reading back


@dataclass
class Outcome:
    now: datetime
    timers: dict[tuple[int, str, str], dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)  # the timers' events, in id order
    escalations: list[tuple[int, str]] = field(default_factory=list)
    notifications: Counter = field(default_factory=Counter)
    reminded: Counter = field(default_factory=Counter)  # deadline reminder rows per blocker
    blockers: dict[int, dict] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for e in self.events if e["action"] == action)

    def duplicates(self) -> list[tuple[int, str, str]]:
        # (blocker, action, step) is not enough: both deadline reminders act `remind_deadline`
        # with the same step "3.1"; the timer's kind tells them apart.
        seen = Counter((e["blocker_id"], e["kind"], e["step"]) for e in self.events)
        return sorted(k for k, n in seen.items() if n > 1)

    def pending_due(self) -> list[dict]:
        return [
            t for t in self.timers.values() if t["status"] == "pending" and t["due_at"] <= self.now
        ]

    def faults(self, *, complete: bool = True) -> list[str]:
        faults = []
        dup = self.duplicates()
        if dup:
            faults.append(f"{len(dup)} timer steps with more than one event, e.g. {dup[:3]}")
        per_step = Counter((e["blocker_id"], e["kind"], e["step"]) for e in self.events)
        ghosts = [k for k in per_step if self.timers.get(k, {}).get("status") != "fired"]
        if ghosts:
            faults.append(
                f"{len(ghosts)} timer events whose timer is not 'fired', e.g. {ghosts[:3]}"
            )
        silent = [k for k, t in self.timers.items() if t["status"] == "fired" and k not in per_step]
        if silent:
            faults.append(f"{len(silent)} fired timers without an event, e.g. {silent[:3]}")
        early = [e for e in self.events if e["due_at"] is not None and e["due_at"] > self.now]
        early += [
            t for t in self.timers.values() if t["status"] == "fired" and t["due_at"] > self.now
        ]
        if early:
            faults.append(f"{len(early)} timers fired before they were due, e.g. {early[:2]}")
        if complete and self.pending_due():
            faults.append(f"{len(self.pending_due())} due timers still pending")
        esc = Counter(self.escalations)
        if any(n > 1 for n in esc.values()):
            faults.append("an escalation step was taken twice")
        # Escalation entries are exactly levels 1..escalation_level of each blocker.
        steps: dict[int, set[str]] = {}
        for bid, step in self.escalations:
            steps.setdefault(bid, set()).add(step)
        wrong = [
            bid for bid, b in self.blockers.items()
            if steps.get(bid, set()) != {f"level-{n}" for n in range(1, b["level"] + 1)}
        ]  # fmt: skip
        if wrong:
            faults.append(f"{len(wrong)} blockers whose escalations skip or repeat a level")
        if self.notifications["escalated"] != len(self.escalations):
            faults.append(
                f"{self.notifications['escalated']} escalation notices for "
                f"{len(self.escalations)} escalations"
            )
        # One reminder notice per reminder event: the unit's channel is a webhook, a system
        # that is told what each timer did even when the deadline then passed (a chat
        # group's unsent "due tomorrow" would be dropped, tests/service/test_untrue_reminders).
        expected = Counter(e["blocker_id"] for e in self.events if e["action"] == "remind_deadline")
        if self.reminded != expected:
            faults.append(
                f"{sum(self.reminded.values())} reminder notices for "
                f"{sum(expected.values())} reminder events still true"
            )
        per_blocker = Counter(e["blocker_id"] for e in self.events)
        for bid, b in self.blockers.items():
            if not (b["version"] == b["last_seq"] == 3 + per_blocker[bid]):
                faults.append(f"blocker {bid}: version {b['version']}, last_seq {b['last_seq']}")
                break
        faults += self.broken
        return faults


def outcome(db: Database, now: datetime) -> Outcome:
    out = Outcome(now=now.astimezone(UTC))
    with db.unit_of_work(readonly=True) as s:
        if db.is_postgres:  # one snapshot for every table, even while a sweeper commits
            s.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        for t in s.scalars(select(Timer).order_by(Timer.id)):
            out.timers[(t.blocker_id, t.kind, t.step)] = {
                "id": t.id, "kind": t.kind, "step": t.step, "blocker_id": t.blocker_id,
                "due_at": t.due_at, "status": t.status, "fired_at": t.fired_at,
            }  # fmt: skip
        for e in s.scalars(select(Event).where(Event.actor == SYSTEM).order_by(Event.id)):
            key = (e.blocker_id, e.payload.get("timer"), e.payload.get("step"))
            timer = out.timers.get(key)
            out.events.append(
                {
                    "id": e.id, "blocker_id": e.blocker_id, "action": e.action, "kind": key[1],
                    "step": key[2], "at": e.at, "due_at": timer["due_at"] if timer else None,
                }
            )  # fmt: skip
        out.escalations = [
            tuple(r) for r in s.execute(select(Escalation.blocker_id, Escalation.step)).all()
        ]
        out.notifications = Counter(
            dict(s.execute(text("SELECT kind, count(*) FROM notifications GROUP BY kind")).all())
        )
        reminder_rows = text("SELECT blocker_id FROM notifications WHERE kind = 'deadline_reminder'")
        out.reminded = Counter(bid for (bid,) in s.execute(reminder_rows))
        for b in s.scalars(select(Blocker)):
            out.blockers[b.id] = {
                "state": b.state, "level": b.escalation_level, "version": b.version,
                "last_seq": b.last_seq,
            }  # fmt: skip
        out.broken = [str(link) for link in verify_all(s)]
    return out


def expect_exactly_once(out: Outcome, deadline_only: int, reminder_only: int, both: int) -> None:
    assert out.faults() == []
    deadlines = deadline_only + both
    assert out.count("deadline_passed") == deadlines
    assert len(out.escalations) == deadlines and {s for _, s in out.escalations} == {"level-1"}
    # A `both` blocker's reminder (due 03-17 09:00) fires, or is cancelled if a second sweeper
    # fires its deadline (due 03-18) first; either way at most once, never both.
    assert reminder_only <= out.count("remind_deadline") <= reminder_only + both
    states = Counter(b["state"] for b in out.blockers.values())
    assert states == {"deadline": deadlines, "supervised": reminder_only}
    assert all(b["level"] == (b["state"] == "deadline") for b in out.blockers.values())


# --------------------------------------------------------------------------------- processes


def pg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class Sweepers:
    """`duban sweep` processes on one database; every one is killed at teardown."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url, self.logs = url, logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(
        self, name: str, *, clock: datetime, once: bool = False, batch: int | None = None,
        naive: bool = False, interval: float = 0.2, app: str | None = None,
    ) -> subprocess.Popen:  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
        url = self.url + (f"?application_name={app}" if app else "")
        env.update(
            DUBAN_DATABASE_URL=url,
            DUBAN_ADMIN_KEY=ADMIN_KEY,
            DUBAN_CLOCK="manual",
            DUBAN_CLOCK_START=clock.isoformat(),
            DUBAN_SWEEP_INTERVAL_S=str(interval),
        )
        args = [str(DUBAN), "sweep"]
        args += ["--once"] * once + ["--naive"] * naive
        args += ["--batch", str(batch)] if batch else []
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def fired_by(self, name: str) -> int:
        """What the process says it fired: its last `fired N timers (M in all)` line."""
        totals = re.findall(r"\((\d+) in all\)|fired (\d+)$", self.log(name), re.M)
        return max((int(a or b) for a, b in totals), default=0)

    def counted(self, names: tuple[str, ...], expected: int, timeout: float = 30) -> dict:
        """Each process logs its count when its sweep returns; wait for them to add up."""
        give_up = time.monotonic() + timeout
        while True:
            by_process = {name: self.fired_by(name) for name in names}
            if sum(by_process.values()) == expected or time.monotonic() > give_up:
                return by_process
            time.sleep(0.1)

    def wait(self, name: str, timeout: float = 120) -> int:
        code = self.procs[name].wait(timeout)
        assert code == 0, f"{name} exited {code}:\n{self.log(name)[-3000:]}"
        return code

    def stop(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)

    def drain(self, now: datetime, timeout: float = 120, names: tuple[str, ...] = ()) -> float:
        """Wait until no timer due at `now` is pending; returns the seconds waited."""
        dsn, start = pg_dsn(self.url), time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                left = conn.execute(
                    "SELECT count(*) FROM timers WHERE status = 'pending' AND due_at <= %s", (now,)
                ).fetchone()[0]
                if left == 0:
                    return time.monotonic() - start
                for name in names or tuple(self.procs):
                    if self.procs[name].poll() not in (None, 0):
                        raise AssertionError(f"{name} died:\n{self.log(name)[-3000:]}")
                if time.monotonic() - start > timeout:
                    raise AssertionError(f"{left} due timers still pending after {timeout} s")
                time.sleep(0.02)


@pytest.fixture
def sweepers(pg_url, tmp_path):
    procs = Sweepers(pg_url, tmp_path)
    try:
        yield procs
    finally:
        procs.kill_all()


# --------------------------------------------------------------------------------- tests


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_sweepers_fire_every_timer_exactly_once(pg_url, sweepers):
    """Three `duban sweep` processes (batches 100, 200, 500) over the same 10,000 due timers:
    3,000 passed deadlines, 6,000 reminders, and 500 blockers with one of each due."""
    deadline_only, reminder_only, both = 3000, 6000, 500
    db = Database(pg_url)
    ctx = make_ctx(db, NOW)
    seed_blockers(db, ctx, seed_world(db), exactly_once_plan(deadline_only, reminder_only, both))
    assert len(outcome(db, NOW).pending_due()) == deadline_only + reminder_only + 2 * both == 10_000
    for name, batch in (("a", 100), ("b", 200), ("c", 500)):
        sweepers.start(name, clock=NOW, batch=batch)
    took = sweepers.drain(NOW, timeout=400)
    fired = sum(1 for t in outcome(db, NOW).timers.values() if t["status"] == "fired")
    by_process = sweepers.counted(("a", "b", "c"), fired)
    time.sleep(0.5)  # at least one more sweep each: nothing is left to fire twice
    for name in ("a", "b", "c"):
        sweepers.stop(name)
    out = outcome(db, NOW)
    expect_exactly_once(out, deadline_only, reminder_only, both)
    assert sum(1 for t in out.timers.values() if t["status"] == "fired") == fired
    print(f"\nthree sweepers: {fired} fired in {took:.1f} s, by process {by_process}")
    # The processes' own counts add up: no two of them believe they fired the same timer.
    assert sum(by_process.values()) == fired, by_process
    assert all(n > 0 for n in by_process.values()), by_process  # the work really was shared
    db.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_sweeper_killed_mid_batch_then_restarted(pg_url, sweepers):
    """SIGKILL while a batch's transaction is open; nothing of it stays; a restart fires the
    rest, each timer once. (2,000 timers: the 10,000-timer run is the test above.)"""
    deadline_only, reminder_only, both = 600, 1200, 100
    db = Database(pg_url)
    ctx = make_ctx(db, NOW)
    seed_blockers(db, ctx, seed_world(db), exactly_once_plan(deadline_only, reminder_only, both))
    total = deadline_only + reminder_only + 2 * both
    dsn = pg_dsn(pg_url)
    victim = sweepers.start("victim", clock=NOW, batch=250, app="duban_victim")
    probe = """
        SELECT (SELECT count(*) FROM timers WHERE status = 'fired'),
               (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'duban_victim'
                  AND state = 'idle in transaction' AND backend_xid IS NOT NULL)
    """
    give_up = time.monotonic() + 120
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            assert time.monotonic() < give_up, sweepers.log("victim")[-3000:]
            assert victim.poll() is None, sweepers.log("victim")[-3000:]
            fired, _ = conn.execute(probe).fetchone()
            if fired < 500:  # two batches committed first
                time.sleep(0.02)
                continue
            # Freeze it, then look: a frozen client whose server backend sits idle inside a
            # transaction holding row locks or writes (it has an xid) is provably mid-batch.
            # Kill it right there.
            victim.send_signal(signal.SIGSTOP)
            time.sleep(0.1)
            fired, open_with_writes = conn.execute(probe).fetchone()
            if open_with_writes:
                victim.kill()
                break
            victim.send_signal(signal.SIGCONT)
            time.sleep(0.03)
        victim.wait(10)
        # The server notices the dead client and rolls its open transaction back.
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'duban_victim'"
        ).fetchone()[0]:
            assert time.monotonic() < give_up, "the killed sweeper's backend lingers"
            time.sleep(0.02)
    after_kill = outcome(db, NOW)
    assert sum(1 for t in after_kill.timers.values() if t["status"] == "fired") == fired
    assert after_kill.faults(complete=False) == []  # all or nothing: no half-fired timer
    assert 0 < fired < total and len(after_kill.pending_due()) > 0
    for name, batch in (("restarted", 250), ("second", 100)):
        sweepers.start(name, clock=NOW, batch=batch)
    sweepers.drain(NOW, timeout=300, names=("restarted", "second"))
    fired_in_all = sum(1 for t in outcome(db, NOW).timers.values() if t["status"] == "fired")
    by_process = sweepers.counted(("restarted", "second"), fired_in_all - fired)
    time.sleep(0.5)
    for name in ("restarted", "second"):
        sweepers.stop(name)
    out = outcome(db, NOW)
    expect_exactly_once(out, deadline_only, reminder_only, both)
    print(f"\nkilled mid-batch after {fired} fired; the restarted sweepers fired {by_process}")
    # The killed batch's timers were fired once, by the restarted sweepers.
    assert sum(by_process.values()) == fired_in_all - fired, by_process
    db.dispose()


@pytest.mark.postgres
def test_naive_control_run_shows_duplicates(pg_url, sweepers):
    """Control: two `duban sweep --naive` processes at once, and `Outcome.faults()` sees it.

    `--naive` drops the claim's protections (no FOR UPDATE SKIP LOCKED, no re-check). Both
    processes claim the oldest pending reminders, the second waits on each blocker's row lock
    in the engine and fires the reminder again on the fresh row. They overlap whenever both
    run at the same time (a claimed but uncommitted reminder is still `pending` to the other),
    which 400 reminders at a few per 10 ms guarantee; the forced interleaving below is the
    deterministic version of the same control.
    """
    reminders = 400
    db = Database(pg_url)
    ctx = make_ctx(db, NOW)
    seed_blockers(db, ctx, seed_world(db), exactly_once_plan(0, reminders, 0))
    for name in ("naive1", "naive2"):
        sweepers.start(name, clock=NOW, once=True, naive=True, batch=100)
    for name in ("naive1", "naive2"):
        sweepers.wait(name)
    out = outcome(db, NOW)
    print(f"\nnaive control: {len(out.duplicates())} of {reminders} reminders fired twice")
    assert out.duplicates(), "two naive processes produced no duplicates"
    assert any("more than one event" in f for f in out.faults())
    assert out.count("remind_deadline") == reminders + len(out.duplicates())
    assert out.notifications["deadline_reminder"] > reminders  # the duplicates reach the outbox
    by_process = sweepers.fired_by("naive1") + sweepers.fired_by("naive2")
    assert by_process == out.count("remind_deadline")
    db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("naive", [True, False], ids=["naive", "protected"])
def test_forced_interleaving_two_claims_before_either_fires(pg_url, monkeypatch, naive):
    """The deterministic control: two sweeps in two threads, each claiming before either fires.

    Naive, both claim the same 50 reminders and both fire them: 50 duplicates, every time.
    With the protections, the same forced interleaving fires each reminder once: the second
    claim skips the rows the first holds.
    """
    db = Database(pg_url)
    ctx = make_ctx(db, NOW)
    seed_blockers(db, ctx, seed_world(db), exactly_once_plan(0, 50, 0))
    real_claim = sweep_module.claim_due
    both_claimed = threading.Barrier(2, timeout=20)
    first = threading.local()

    def claim_then_wait(*args, **kwargs):
        timers = real_claim(*args, **kwargs)
        if not getattr(first, "done", False):
            first.done = True
            both_claimed.wait()
        return timers

    monkeypatch.setattr(sweep_module, "claim_due", claim_then_wait)
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(sweep_once(db, ctx, naive=naive))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors and len(results) == 2
    out = outcome(db, NOW)
    if naive:
        assert sorted(results) == [(50, 50), (50, 50)]
        assert len(out.duplicates()) == 50 and out.count("remind_deadline") == 100
        assert any("more than one event" in f for f in out.faults())
    else:
        assert sorted(results) == [(0, 0), (50, 50)]
        assert out.faults() == [] and out.count("remind_deadline") == 50
    db.dispose()


@pytest.mark.postgres
def test_service_down_backlog_fires_once_in_due_order_within_two_intervals(pg_url, sweepers):
    """Down across a month of due moments, then started: the whole backlog fires in the first
    sweep (repeating reminders that fall due as their previous step fires included), each
    timer once, in due order, none early, within start-up + two sweep intervals."""
    db = Database(pg_url)
    ctx = make_ctx(db, local(2026, 3, 1, 9))
    down_now = local(2026, 4, 13, 12)
    seed_blockers(db, ctx, seed_world(db), backlog_plan(ctx, db, 40))
    backlog = outcome(db, down_now).pending_due()
    due_moments = {t["due_at"] for t in backlog}
    assert len(backlog) > 120 and len(due_moments) >= 40
    # Start-up allowance: a sweeper that starts, finds nothing due, and exits.
    t0 = time.monotonic()
    sweepers.start("startup", clock=local(2026, 3, 1, 9), once=True)
    sweepers.wait("startup")
    startup = time.monotonic() - t0
    assert sweepers.fired_by("startup") == 0
    interval = 1.0
    t0 = time.monotonic()
    sweepers.start("service", clock=down_now, interval=interval)
    sweepers.drain(down_now, timeout=60)
    elapsed = time.monotonic() - t0
    time.sleep(interval * 1.5)  # at least one more sweep: nothing else fires
    sweepers.stop("service")
    out = outcome(db, down_now)
    assert out.faults() == []
    print(
        f"\nservice down: {len(backlog)} overdue timers at {len(due_moments)} due moments "
        f"drained {elapsed:.2f} s after process start (start-up alone {startup:.2f} s, "
        f"interval {interval} s)"
    )
    # One sweep did it all: the first log line is the total.
    assert re.search(r"fired (\d+) timers \(\1 in all\)", sweepers.log("service")), sweepers.log(
        "service"
    )[-2000:]
    assert elapsed <= startup + 2 * interval, (elapsed, startup)
    # Each backlog timer fired once, or was cancelled because its blocker's deadline passed
    # (fired earlier in due order) and moved it out of `supervised`.
    deadline_due = {
        e["blocker_id"]: e["due_at"] for e in out.events if e["action"] == "deadline_passed"
    }
    for t in backlog:
        now_t = out.timers[(t["blocker_id"], t["kind"], t["step"])]
        if now_t["status"] != "fired":
            assert now_t["status"] == "cancelled"
            assert deadline_due[t["blocker_id"]] < t["due_at"], t
    # In due order: the backlog's events, in the order they were written, by due moment.
    keys = {(t["blocker_id"], t["kind"], t["step"]) for t in backlog}
    order = [e["due_at"] for e in out.events if (e["blocker_id"], e["kind"], e["step"]) in keys]
    assert order == sorted(order)
    assert len(order) >= len(backlog) * 0.5
    db.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_sweepers_catching_up_together_never_deadlock(pg_url, sweepers):
    """Three sweepers (batch 20) start together on a month's backlog whose blockers have a
    reminder, a deadline and feedback reminders due, so one blocker's timers land in different
    sweepers' claims. Firing a deadline cancels the blocker's other pending timers; before
    `fire_timer` skipped a blocker whose pending timers another sweeper holds, that UPDATE
    waited for the other's claim while the other waited for this one's, PostgreSQL broke the
    deadlock by aborting one, and that `duban sweep` process exited with DeadlockDetected.
    """
    db = Database(pg_url)
    ctx = make_ctx(db, local(2026, 3, 1, 9))
    down_now = local(2026, 4, 13, 12)
    seed_blockers(db, ctx, seed_world(db), backlog_plan(ctx, db, 120))
    assert len(outcome(db, down_now).pending_due()) > 350
    names = ("a", "b", "c")
    for name in names:
        sweepers.start(name, clock=down_now, batch=20)
    sweepers.drain(down_now, timeout=240)  # fails at once if a sweeper dies
    fired = sum(1 for t in outcome(db, down_now).timers.values() if t["status"] == "fired")
    by_process = sweepers.counted(names, fired)
    time.sleep(0.5)
    for name in names:
        assert sweepers.procs[name].poll() is None, sweepers.log(name)[-3000:]
        sweepers.stop(name)
        assert "Traceback" not in sweepers.log(name), sweepers.log(name)[-3000:]
    out = outcome(db, down_now)
    assert out.faults() == []
    assert sum(by_process.values()) == fired, by_process
    db.dispose()


@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"]
)
def test_advance_clock_over_downtime_fires_each_at_its_due_moment(backend, request):
    """The simulation clock jumped over the downtime: every timer fires at its own due moment."""
    url = request.getfixturevalue("pg_url" if backend == "postgres" else "sqlite_url")
    db = Database(url)
    ctx = make_ctx(db, local(2026, 3, 1, 9))
    seed_blockers(db, ctx, seed_world(db), backlog_plan(ctx, db, 40))
    target = local(2026, 4, 13, 12)
    fired = advance_clock(db, ctx, target)
    assert ctx.clock.now() == target.astimezone(UTC)
    out = outcome(db, target)
    assert out.faults() == []
    assert fired == sum(1 for t in out.timers.values() if t["status"] == "fired") > 150
    # Each event carries its timer's due moment, so they are written in due order.
    assert all(e["at"] == e["due_at"] for e in out.events)
    ats = [e["at"] for e in out.events]
    assert ats == sorted(ats)
    # What follows from firing in order also fired: climbs of passed deadlines (3 working
    # days on), repeated feedback reminders.
    assert out.count("climb") > 0 and out.count("feedback_missed") > 0
    # Nothing due after the target fired; nothing due at it is pending.
    assert all(t["due_at"] > target for t in out.timers.values() if t["status"] == "pending")
    db.dispose()


def test_clock_set_back_an_hour_fires_nothing_twice_or_early(db_url, tmp_path):
    """Over REST: forward, back an hour, a separate sweeper behind, forward again."""
    start = "2026-03-16T10:30:00+08:00"
    with make_client(db_url, clock_start=start) as client:
        city(client)
        create_project(client, "P1", "wy")
        db, ctx = client.app.state.db, client.app.state.ctx
        add_channels(db)
        world = world_of(db)
        plan = [(ENTERED.date() + timedelta(days=2 + i % 10), ENTERED) for i in range(80)]
        plan = [(d, e) for d, e in plan if d.weekday() < 5]
        seed_blockers(db, ctx, world, plan)
        t = local(2026, 3, 20, 9, 30)
        moved = set_clock(client, t.isoformat())
        first = outcome(db, t)
        assert first.faults() == [] and moved["fired"] == len(first.events) > 0
        assert any(t - timedelta(hours=1) < e["due_at"] <= t for e in first.events)
        back = t - timedelta(hours=1)
        moved = set_clock(client, back.isoformat())
        assert moved["fired"] == 0 and moved["now"] == "2026-03-20T08:30:00+08:00"
        assert outcome(db, t).events == first.events
        # The engine's own sweep at the earlier clock, and a separate process behind by an hour.
        assert sweep_once(db, ctx) == (0, 0)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
        env.update(
            DUBAN_DATABASE_URL=db_url, DUBAN_ADMIN_KEY=ADMIN_KEY, DUBAN_CLOCK="manual",
            DUBAN_CLOCK_START=back.isoformat(),
        )  # fmt: skip
        done = subprocess.run(
            [str(DUBAN), "sweep", "--once"], env=env, cwd=ROOT, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 0 and "fired 0" in done.stdout, done.stderr[-2000:]
        assert outcome(db, t).events == first.events
        later = local(2026, 3, 23, 10)
        moved = set_clock(client, later.isoformat())
        out = outcome(db, later)
        assert out.faults() == []
        new = out.events[len(first.events) :]
        assert out.events[: len(first.events)] == first.events
        assert moved["fired"] == len(new) > 0 and all(e["due_at"] > t for e in new)
        assert all(e["at"] == e["due_at"] for e in out.events)


def test_a_blocker_held_by_a_transaction_does_not_hold_up_the_others(pg_url):
    """The first due timers belong to a blocker that an API transaction has locked: the sweep
    skips that blocker (SKIP LOCKED) and fires everyone else's, then its own once freed."""
    db = Database(pg_url)
    ctx = make_ctx(db, local(2026, 3, 1, 9))
    seed_blockers(db, ctx, seed_world(db), backlog_plan(ctx, db, 40))
    now = local(2026, 4, 13, 12)
    due = outcome(db, now).pending_due()
    first = min(due, key=lambda t: (t["due_at"], t["id"]))["blocker_id"]
    assert sum(1 for t in due if t["blocker_id"] == first) >= 2  # it heads the claim twice
    holder = psycopg.connect(pg_dsn(pg_url))
    try:
        holder.execute("SELECT id FROM blockers WHERE id = %s FOR UPDATE", (first,))
        fired, _ = sweep_once(db, ctx, now=now)
        left = outcome(db, now).pending_due()
        assert fired > 100
        assert left and {t["blocker_id"] for t in left} == {first}, left
    finally:
        holder.rollback()
        holder.close()
    fired_after, _ = sweep_once(db, ctx, now=now)
    assert fired_after >= 1
    out = outcome(db, now)
    assert out.pending_due() == [] and out.faults() == []
    db.dispose()
