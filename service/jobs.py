"""Background work in the serve process: APScheduler ticks the timer sweep, and wakes it
at the next due moment when that comes before the next tick."""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import FastAPI

from notifiers.dispatcher import Dispatcher
from service.failures import FailureLog
from workflows.briefing import enqueue_monthly_briefing
from workflows.daily_digest import enqueue_daily_digests
from workflows.sweep import sweep_once
from workflows.timers import next_due

log = logging.getLogger("duban.jobs")
WAKE_JOB = "sweep-at-next-due"


class Jobs:
    """The sweep is one periodic job; timers themselves are rows, never scheduler jobs."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.scheduler = BackgroundScheduler(timezone=app.state.settings.timezone)
        self._sweep_lock = threading.Lock()
        self._stop = threading.Event()
        self._dispatch_thread: threading.Thread | None = None
        self.dispatcher: Dispatcher | None = None
        self._failures = FailureLog(log, "timer sweep")

    def sweep(self) -> None:
        if not self._sweep_lock.acquire(blocking=False):
            return
        try:
            ctx, db = self.app.state.ctx, self.app.state.db
            lock = getattr(ctx.clock, "lock", None)
            # The simulation clock's lock: a clock move writes the same day's digests.
            with lock if lock is not None else contextlib.nullcontext():
                fired, _ = sweep_once(db, ctx, batch=self.app.state.settings.sweep_batch)
                counter = self.app.state.metrics.timers_fired
                if fired and counter is not None:
                    counter.inc(fired)
                with db.unit_of_work() as session:
                    enqueue_daily_digests(session, ctx)
                    enqueue_monthly_briefing(session, ctx)
            self._failures.succeeded()
            if lock is None:
                self.wake_at_next_due()
        except Exception:
            self._failures.failed()
        finally:
            self._sweep_lock.release()

    def wake_at_next_due(self) -> None:
        """Sweep again the moment the next timer falls due, if that is before the next tick.

        The tick stays the floor (a timer planned meanwhile waits at most one interval);
        this takes the average half interval off every deadline's escalation. System clock
        only: the simulation clock fires what falls due as it is moved."""
        ctx, db = self.app.state.ctx, self.app.state.db
        interval = timedelta(seconds=self.app.state.settings.sweep_interval_s)
        with db.unit_of_work(readonly=True) as session:
            due = next_due(session, until=ctx.clock.now() + interval)
        if due is not None:
            self.scheduler.add_job(
                self.sweep,
                "date",
                run_date=due,
                id=WAKE_JOB,
                replace_existing=True,
                misfire_grace_time=None,
            )

    def start(self) -> None:
        settings = self.app.state.settings
        if settings.scheduler:
            self.scheduler.add_job(
                self.sweep,
                "interval",
                seconds=settings.sweep_interval_s,
                id="sweep",
                max_instances=1,
                coalesce=True,
            )
        self.scheduler.start()
        if settings.dispatcher:
            self.dispatcher = make_dispatcher(self.app)
            self._dispatch_thread = threading.Thread(
                target=self.dispatcher.run_forever,
                args=(self._stop,),
                name="duban-dispatcher",
                daemon=True,
            )
            self._dispatch_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.scheduler.shutdown(wait=True)
        if self._dispatch_thread is not None:
            self._dispatch_thread.join(timeout=15)
        if self.dispatcher is not None:
            self.dispatcher.close()


def make_dispatcher(app: FastAPI) -> Dispatcher:
    settings = app.state.settings
    return Dispatcher(
        app.state.db,
        allowed_hosts=settings.allowed_hosts,
        base_url=settings.public_url,
        business_now=app.state.ctx.clock.now,
    )
