"""Helpers shared by the routers: pagination, time formatting, lookups, error answers."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from fastapi import Path, Query, Request
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import event
from sqlmodel import Session, select

from service.auth import Principal
from service.models import Unit
from service.problems import Problem

T = TypeVar("T")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": desc, "content": {"application/problem+json": {}}}
    for status, desc in (
        (400, "Malformed JSON"),
        (401, "No or unknown API key"),
        (403, "Outside the key's scopes or jurisdiction"),
        (404, "Not found (or outside the key's jurisdiction)"),
        (409, "Conflicts with an existing record or the current state"),
        (422, "Invalid field values; the problem names the field"),
        (429, "Rate limit exceeded; see Retry-After"),
    )
}

# Row ids are 32-bit (PostgreSQL `integer`): a larger id names nothing that can exist,
# and the database would refuse to even compare with it, so it is refused up front.
MAX_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ID, description="Numeric id")]


def _a_json_number(value: Any) -> Any:
    """Whole numbers in bodies are JSON numbers, as the schema says: `true` and `"5"` are
    refused (pydantic would read them as 1 and 5); `5.0` is still 5."""
    if isinstance(value, bool | str | bytes):
        raise PydanticCustomError(
            "int_type", "must be a whole number, e.g. 5 (not text or true/false)"
        )
    return value


# After the constraints: placed before them, pydantic writes `ge`/`le` into the schema.
A_NUMBER = BeforeValidator(_a_json_number)
BodyId = Annotated[int, Field(ge=1, le=MAX_ID, description="Numeric id"), A_NUMBER]
MAX_PAGE = 500
# Capped, not refused: a page of more than 500 is a page of 500 (api.md: "max 500").
Limit = Annotated[
    int,
    Query(ge=1, description="Page size, default 50; more than 500 is taken as 500"),
    AfterValidator(lambda n: min(n, MAX_PAGE)),
]
Cursor = Annotated[
    str | None, Query(min_length=1, max_length=200, description="Opaque cursor from next_cursor")
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def nul_at(value: Any) -> tuple[Any, ...] | None:
    """Where in a JSON value a NUL character hides (PostgreSQL text cannot hold one).
    Iterative: a deeply nested body must not exhaust the stack."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path
        elif isinstance(item, dict | list):
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and "\x00" in key:
                    return (*path, key)
                stack.append(((*path, key), child))
    return None


class Strict(BaseModel):
    """Request bodies: unknown fields are refused, so nothing can be mass-assigned; no text
    may hold a NUL character, on either database."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        where = nul_at(data)
        if where is not None:
            raise PydanticCustomError(
                "nul_character",
                "contains a NUL character (\\u0000), which no text may hold; remove it",
                {"field": ".".join(str(part) for part in where)},
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """`null` for an optional field with a default (e.g. `authority_level`,
        `assisting_units`) means "not given": the default, as clients that write None as
        null expect. Such fields are declared nullable, so the schema says so too."""
        if not isinstance(data, dict):
            return data
        dropped = {
            field.alias or name
            for name, field in cls.model_fields.items()
            if data.get(field.alias or name, ...) is None
            and not field.is_required()
            and (field.default is not None or field.default_factory is not None)
        }
        return {k: v for k, v in data.items() if k not in dropped} if dropped else data


def page_of(rows: list[Any], limit: int, render: Callable[[Any], Any]) -> Page:
    """The page for rows fetched with `limit + 1`: the extra row only says there is more."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(
        items=[render(r) for r in rows], next_cursor=encode_cursor(rows[-1].id) if more else None
    )


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = int(value["after"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise Problem(
            422, "cursor is not one this API handed out; start again without it."
        ) from exc
    if not 0 <= after <= MAX_ID:
        raise Problem(422, "cursor is not one this API handed out; start again without it.")
    return after


def local_iso(instant: datetime | None, tz: ZoneInfo) -> str | None:
    return None if instant is None else instant.astimezone(tz).isoformat()


def iso_date(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def unit_by_code(session: Session, code: str, field: str = "unit") -> Unit:
    unit = session.exec(select(Unit).where(Unit.code == code)).first()
    if unit is None:
        raise Problem(422, f"{field}: there is no unit with code '{code}'.", field=field)
    return unit


def visible_unit_or_404(session: Session, principal: Principal, code: str) -> Unit:
    unit = session.exec(select(Unit).where(Unit.code == code)).first()
    if unit is None or not principal.sees_path(unit.path):
        raise Problem(404, f"There is no unit '{code}' that this key can see.")
    return unit


def forget_cached_keys(session: Session, request: Request) -> None:
    """Forget the process's cached API keys once this unit of work commits (a key revoked
    or rotated, a unit changed); a lookup in between would cache the old state again."""
    principals = request.app.state.principals
    event.listen(session, "after_commit", lambda _s: principals.forget_all(), once=True)
