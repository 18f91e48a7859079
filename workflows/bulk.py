"""Set-wise writes straight to the driver, for the sweep's batches.

SQLAlchemy's executemany spends tens of microseconds per row on parameter processing;
a burst of 100,000 escalations writes ~600,000 rows. These helpers convert each column
once per row the way the column types would (UTC instants, JSON, booleans) and hand the
rows to the driver's own executemany. The values stored are the same as through the ORM.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Table
from sqlmodel import Session

from service.models.types import UTCDateTime


def _sqlite_instant(value: datetime | None) -> str | None:
    # What UTCDateTime + SQLite's DATETIME store: naive UTC text with microseconds.
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _json(value: Any) -> str:
    return json.dumps(value)


def _converters(table: Table, columns: Sequence[str], sqlite: bool) -> list[Callable | None]:
    out: list[Callable | None] = []
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, UTCDateTime):
            out.append(_sqlite_instant if sqlite else None)
        elif isinstance(kind, JSON):
            out.append(_json)
        elif isinstance(kind, Boolean) and sqlite:
            out.append(int)
        else:
            out.append(None)
    return out


def _params(rows: Sequence[dict[str, Any]], columns: Sequence[str], convert) -> list[tuple]:
    """The driver's parameter tuples, one per row."""
    return list(zip(*_columns(rows, columns, convert), strict=True))


def _columns(rows: Sequence[dict[str, Any]], columns: Sequence[str], convert) -> list[list]:
    """The rows' values column by column, converted a column at a time (a batch's rows share
    most of their instants: each distinct one is converted once)."""
    values = []
    for name, f in zip(columns, convert, strict=True):
        column = [row[name] for row in rows]
        if f is _sqlite_instant:
            seen: dict[datetime, str] = {}
            column = [
                None if v is None else seen[v] if v in seen else seen.setdefault(v, f(v))
                for v in column
            ]
        elif f is not None:
            column = [None if v is None else f(v) for v in column]
        values.append(column)
    return values


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT every row (all with the same keys) in one executemany."""
    if not rows:
        return
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    columns = list(rows[0])
    params = _params(rows, columns, _converters(table, columns, sqlite))
    if not sqlite:
        # COPY: one statement for the whole set instead of one execution per row.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in params:
                copy.write_row(row)
        return
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )
    conn.exec_driver_sql(sql, params)


def update_rows(session: Session, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE … SET the other keys … WHERE `key` = row[key], for every row (each key once):
    one executemany on SQLite, one statement over arrays on PostgreSQL."""
    if not rows:
        return
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    columns = [c for c in rows[0] if c != key] + [key]
    convert = _converters(table, columns, sqlite)
    if sqlite:
        sets = ", ".join(f"{c} = ?" for c in columns[:-1])
        sql = f"UPDATE {table.name} SET {sets} WHERE {key} = ?"
        conn.exec_driver_sql(sql, _params(rows, columns, convert))
        return
    # PostgreSQL: one statement over the columns as arrays, not one execution per row. The
    # keys are given twice so that the rows are found through the key's index, never by a
    # scan of the table joined to the arrays.
    types = [table.c[c].type.compile(dialect=conn.dialect) for c in columns]
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    sets = ", ".join(f"{c} = v.{c}" for c in columns[:-1])
    sql = (
        f"UPDATE {table.name} SET {sets} FROM unnest({arrays}) AS v({', '.join(columns)}) "
        f"WHERE {table.name}.{key} = v.{key} AND {table.name}.{key} = ANY(%s::{types[-1]}[])"
    )
    values = _columns(rows, columns, convert)
    conn.exec_driver_sql(sql, (*values, values[-1]))
