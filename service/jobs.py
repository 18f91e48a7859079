"""Background work in the serve process: APScheduler ticks the timer sweep."""

from __future__ import annotations

import logging
import threading

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import FastAPI

from notifiers.dispatcher import Dispatcher
from workflows.daily_digest import enqueue_daily_digests
from workflows.sweep import sweep_once

log = logging.getLogger("duban.jobs")


class Jobs:
    """The sweep is one periodic job; timers themselves are rows, never scheduler jobs."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.scheduler = BackgroundScheduler(timezone=app.state.settings.timezone)
        self._sweep_lock = threading.Lock()
        self._stop = threading.Event()
        self._dispatch_thread: threading.Thread | None = None
        self.dispatcher: Dispatcher | None = None

    def sweep(self) -> None:
        if not self._sweep_lock.acquire(blocking=False):
            return
        try:
            ctx, db = self.app.state.ctx, self.app.state.db
            lock = getattr(ctx.clock, "lock", None)
            if lock is not None:
                with lock:
                    fired, _ = sweep_once(db, ctx, batch=self.app.state.settings.sweep_batch)
            else:
                fired, _ = sweep_once(db, ctx, batch=self.app.state.settings.sweep_batch)
            if fired:
                self.app.state.metrics.timers_fired.inc(fired)
            with db.unit_of_work() as session:
                enqueue_daily_digests(session, ctx)
        except Exception:
            log.exception("timer sweep failed; it will run again")
        finally:
            self._sweep_lock.release()

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
