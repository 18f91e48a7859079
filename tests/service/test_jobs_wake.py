"""With the system clock the sweep also wakes at the next due moment, not only on its tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.jobs import WAKE_JOB, Jobs
from service.models import Timer
from tests.helpers import city, create_blocker, create_project, make_client


def _timer(app, blocker_id: int, due: datetime, kind: str) -> None:
    with app.state.db.unit_of_work() as session:
        session.add(
            Timer(
                blocker_id=blocker_id,
                kind=kind,
                step="1.1",
                due_at=due,
                payload={"state": "collected", "action": "remind_deadline", "n": 1},
            )
        )


def _wake(jobs: Jobs):
    job = jobs.scheduler.get_job(WAKE_JOB)
    return None if job is None else job.trigger.run_date


def test_sweep_wakes_at_the_next_due_moment_within_the_interval(db_url):
    with make_client(db_url, clock="system", sweep_interval_s=10) as client:
        app = client.app
        city(client)
        create_project(client)
        blocker = create_blocker(client)
        jobs = Jobs(app)  # not started: the test reads what it schedules
        # Nothing pending: no wake-up, the tick alone.
        jobs.sweep()
        assert _wake(jobs) is None
        # Due beyond the next tick: still the tick's job.
        later = datetime.now(UTC) + timedelta(seconds=60)
        _timer(app, blocker["id"], later, "far")
        jobs.sweep()
        assert _wake(jobs) is None
        # Due before the next tick: a wake-up at that very moment.
        soon = datetime.now(UTC) + timedelta(seconds=6)
        _timer(app, blocker["id"], soon, "near")
        jobs.sweep()
        assert _wake(jobs) == soon


def test_no_wake_up_with_the_simulation_clock(db_url):
    with make_client(db_url) as client:  # manual clock: timers fire as the clock is moved
        app = client.app
        city(client)
        create_project(client)
        blocker = create_blocker(client)
        _timer(app, blocker["id"], app.state.ctx.clock.now() + timedelta(seconds=0.5), "near")
        jobs = Jobs(app)
        jobs.sweep()
        assert _wake(jobs) is None
