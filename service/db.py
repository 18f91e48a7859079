"""Database engines and the unit of work.

SQLite runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so concurrent writers queue on the lock instead of failing
half-way or losing updates. Within one process they queue on a Python lock first
(`WriterGate`): SQLite's own busy handler polls with sleeps of up to 100 ms, which
under contention turns a 2 ms write into a 100 ms+ tail. Read-only units of work use
a second engine that begins with a plain deferred ``BEGIN``, so readers never wait
for the writer.

Nothing below the edge commits: a request dependency or ``unit_of_work()`` in a
job commits or rolls back; services only ``flush()``.

A commit that wrote outbox rows rings the database's ``outbox_bell``, so a dispatcher in
the same process sends them at once instead of at its next poll (:func:`note_outbox`); on
PostgreSQL it also NOTIFYs the dispatchers of other processes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session

SQLITE_BUSY_TIMEOUT_MS = 30_000

# Small reference tables whose rows one unit of work asks for again and again (a
# blocker's project and units: in the answer, the role checks and the outbox).
PINNED_TABLES = frozenset({"units", "projects"})


class UnitOfWorkSession(Session):
    """A session that keeps the units and projects it loaded until it closes.

    SQLAlchemy's identity map holds rows weakly: a `session.get(Unit, id)` whose result
    is dropped is loaded again by the next `get`, so a page of 20 blockers cost 40
    extra SELECTs. Pinning them makes every later `get` within the unit of work a
    dictionary lookup; queries with populate_existing still refresh them.
    """


# session.info key: this transaction wrote or re-queued outbox rows. Set by the flush of a
# Notification object, or by `note_outbox` from whoever inserts rows without the ORM.
OUTBOX = "outbox"
OUTBOX_TABLE = "notifications"
OUTBOX_CHANNEL = "duban_outbox"  # PostgreSQL LISTEN/NOTIFY channel (notifiers/wakeup.py)
NOTIFIED = "outbox_notified"  # session.info key: this (sub)transaction sent its NOTIFY


def note_outbox(session: Session) -> None:
    """This transaction writes outbox rows: ring the process's bell once it commits and, on
    PostgreSQL, NOTIFY the dispatchers of other processes (delivered only at commit)."""
    session.info[OUTBOX] = True
    if session.info.get(NOTIFIED):
        return
    session.info[NOTIFIED] = True
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"NOTIFY {OUTBOX_CHANNEL}")


@event.listens_for(UnitOfWorkSession, "before_flush")
def _note_outbox_rows(session: Session, _context: Any, _instances: Any) -> None:
    for instance in (*session.new, *session.dirty):
        if getattr(type(instance), "__tablename__", None) == OUTBOX_TABLE:
            note_outbox(session)
            return


@event.listens_for(UnitOfWorkSession, "after_commit")
def _ring_outbox_bell(session: Session) -> None:
    bell = session.info.get("bell")
    if session.info.pop(OUTBOX, False) and bell is not None:
        bell.set()


@event.listens_for(UnitOfWorkSession, "after_commit")
@event.listens_for(UnitOfWorkSession, "after_soft_rollback")
def _forget_notify(session: Session, *_previous: Any) -> None:
    # Also a savepoint's rollback (the sweep fires each gated timer in one), which takes its
    # NOTIFY with it: the next outbox row notifies again (PostgreSQL sends one per commit).
    session.info.pop(NOTIFIED, None)


@event.listens_for(UnitOfWorkSession, "after_rollback")
def _forget_outbox_rows(session: Session) -> None:
    session.info.pop(OUTBOX, None)


@event.listens_for(UnitOfWorkSession, "loaded_as_persistent")
def _pin_reference_rows(session: Session, instance: object) -> None:
    if getattr(type(instance), "__tablename__", None) in PINNED_TABLES:
        session.info.setdefault("pinned", []).append(instance)


class WriterGate:
    """One SQLite writer at a time in this process, waiting on a lock instead of polling.

    Taken just before ``BEGIN IMMEDIATE``, given back right after ``COMMIT`` (or as the
    transaction rolls back). SQLite's lock still guards against other processes.
    """

    def __init__(self, timeout_s: float) -> None:
        self._lock = threading.Lock()
        self._holder: Any = None
        self.timeout_s = timeout_s

    def take(self, dbapi_conn: Any) -> None:
        if not self._lock.acquire(timeout=self.timeout_s):
            raise sqlite3.OperationalError("database is locked (writer gate timed out)")
        self._holder = dbapi_conn

    def give_back(self, dbapi_conn: Any) -> None:
        if dbapi_conn is not None and self._holder is dbapi_conn:
            self._holder = None
            self._lock.release()

    def install(self, engine: Engine) -> None:
        """Give the gate back after COMMIT or ROLLBACK, and whenever the connection is
        checked in, invalidated or closed, so no path can leave it taken."""
        dialect = engine.dialect
        for name in ("do_commit", "do_rollback"):
            setattr(dialect, name, self._releasing(getattr(dialect, name)))
        for name in ("checkin", "invalidate", "soft_invalidate", "close"):
            event.listen(engine.pool, name, self._on_pool_event)

    def _releasing(self, finish):
        def wrapper(pooled) -> None:
            try:
                finish(pooled)
            finally:
                self.give_back(getattr(pooled, "dbapi_connection", pooled))

        return wrapper

    def _on_pool_event(self, dbapi_conn, *_args) -> None:
        self.give_back(dbapi_conn)


def _raw(conn: Connection) -> Any:
    return conn.connection.dbapi_connection


def _sqlite_engine(url: str, *, write: bool) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        poolclass=NullPool if database in ("", ":memory:") else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Take transaction control away from pysqlite so BEGIN is ours to issue.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    if not write:

        @event.listens_for(engine, "begin")
        def _on_begin_read(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine

    gate = WriterGate(SQLITE_BUSY_TIMEOUT_MS / 1000)
    gate.install(engine)

    @event.listens_for(engine, "begin")
    def _on_begin_write(conn: Connection) -> None:
        raw = _raw(conn)
        gate.take(raw)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            gate.give_back(raw)
            raise

    return engine


class Database:
    """The write engine and the read engine (the same one on PostgreSQL)."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            self.write_engine = _sqlite_engine(url, write=True)
            self.read_engine = _sqlite_engine(url, write=False)
        else:
            self.write_engine = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
            self.read_engine = self.write_engine
        # Set when a commit in this process wrote outbox rows; the dispatcher waits on it.
        self.outbox_bell = threading.Event()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def unit_of_work(self, *, readonly: bool = False) -> Iterator[Session]:
        """Commit on success, roll back on any exception. The only place that commits."""
        engine = self.read_engine if readonly else self.write_engine
        with UnitOfWorkSession(
            engine, expire_on_commit=False, info={"bell": self.outbox_bell}
        ) as session:
            try:
                yield session
                if not readonly:
                    session.commit()
                # A read-only unit of work just closes: its objects stay readable, detached.
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


def among(session: Session, column: Any, ids: Iterable[int]) -> ColumnElement[bool]:
    """``column IN ids`` with the ids as one parameter, so the statement reads the same for
    any number of them: SQLAlchemy compiles it once and the driver parses it once, where an
    expanded ``IN (?, ?, …)`` is compiled and parsed again for each length (a sweep batch
    spent more time building its statements than the database running them). PostgreSQL
    takes ``= ANY(array)``; SQLite ``IN (SELECT value FROM json_each(?))``, which also has
    no limit on the number of ids."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(Integer)))
    values = func.json_each(bindparam(None, json.dumps(list(ids)))).table_valued("value")
    return column.in_(select(values.c.value))


def among_selected(session: Session, column: Any, query: Any) -> ColumnElement[bool]:
    """``column IN (query)`` for an UPDATE or DELETE by key. PostgreSQL takes
    ``= ANY(ARRAY(query))``: the subquery runs once and its ids are found through the key's
    index. A plain ``IN (query)`` may be planned as a hash semi-join over a scan of the whole
    table, which in a sweep's burst is one scan of every timer or outbox row per batch."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(func.array(query.scalar_subquery()))
    return column.in_(query)


def mostly_true(session: Session, clause: ColumnElement[bool]) -> ColumnElement[bool]:
    """`clause`, marked for SQLite's planner as true of most rows it meets. Without
    statistics SQLite guesses that any equality narrows a table to a few rows, and may then
    walk the index of a common value (``status = 'pending'``: the whole outbox in a burst)
    instead of a selective one (the blocker's own rows). PostgreSQL plans from statistics."""
    if session.get_bind().dialect.name == "sqlite":
        return func.likelihood(clause, literal_column("0.9"), type_=Boolean)  # a constant
    return clause
