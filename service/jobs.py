"""Background work in the serve process: APScheduler ticks the timer sweep."""

from __future__ import annotations

import logging
import threading

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import FastAPI

from workflows.sweep import sweep_once

log = logging.getLogger("duban.jobs")


class Jobs:
    """The sweep is one periodic job; timers themselves are rows, never scheduler jobs."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.scheduler = BackgroundScheduler(timezone=app.state.settings.timezone)
        self._sweep_lock = threading.Lock()

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

    def stop(self) -> None:
        self.scheduler.shutdown(wait=True)
