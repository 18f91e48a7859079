"""Wake a dispatcher when another process commits outbox rows (PostgreSQL).

A commit in this process rings the database's ``outbox_bell`` directly. Commits elsewhere —
`duban serve --workers N` processes, other replicas, `duban dispatch` running apart —
``NOTIFY duban_outbox`` in their transaction (:func:`service.db.note_outbox`);
:class:`OutboxListener` LISTENs on one connection of its own and rings the local bell, so
the idle dispatcher claims at once instead of at its next poll. A lost connection only
means polling until it is back; nothing depends on a notification arriving.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy.engine import make_url

from service.db import OUTBOX_CHANNEL, Database
from service.failures import FailureLog

log = logging.getLogger(__name__)

RECONNECT_S = 2.0
CHECK_STOP_S = 0.5


class OutboxListener:
    def __init__(self, db: Database) -> None:
        url = make_url(db.url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._bell = db.outbox_bell
        self._stop = threading.Event()
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="duban-outbox-listen", daemon=True)

    @classmethod
    def start_for(cls, db: Database) -> OutboxListener | None:
        """A running listener on PostgreSQL; None elsewhere (SQLite has no NOTIFY)."""
        if not db.is_postgres:
            return None
        listener = cls(db)
        listener._thread.start()
        return listener

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=CHECK_STOP_S + 5.0)

    def _run(self) -> None:
        failures = FailureLog(log, "listening for outbox commits (polling meanwhile)")
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    failures.succeeded()
                    self._bell.set()  # rows committed while nobody listened
                    self.listening.set()  # after the ring: a test may clear it and wait
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=CHECK_STOP_S, stop_after=1):
                            self._bell.set()
            except psycopg.Error:
                self.listening.clear()
                if not self._stop.is_set():
                    failures.failed()  # one traceback, then a line a minute
                    self._stop.wait(RECONNECT_S)
