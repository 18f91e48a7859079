"""The tamper-evident timeline: hash = SHA-256(prev_hash ‖ canonical JSON of the event)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from service.models import Blocker, Event

GENESIS = "0" * 64


def canonical(event: Any) -> bytes:
    body: dict[str, Any] = {
        "blocker_id": event.blocker_id,
        "seq": event.seq,
        "at": event.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": event.actor,
        "api_key_id": event.api_key_id,
        "officer_id": event.officer_id,
        "action": event.action,
        "state_before": event.state_before,
        "state_after": event.state_after,
        "payload": event.payload,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, event: Any) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()


def next_link(
    blocker: Any,
    *,
    at: datetime,
    actor: str,
    action: str,
    state_before: str | None,
    state_after: str,
    payload: dict[str, Any] | None = None,
    api_key_id: int | None = None,
    officer_id: int | None = None,
) -> dict[str, Any]:
    """The next event row of the blocker's chain, hashed; the blocker row carries the head."""
    row: dict[str, Any] = {
        "blocker_id": blocker.id,
        "seq": blocker.last_seq + 1,
        "at": at,
        "actor": actor,
        "api_key_id": api_key_id,
        "officer_id": officer_id,
        "action": action,
        "state_before": state_before,
        "state_after": state_after,
        "payload": json.loads(json.dumps(payload or {}, ensure_ascii=False, default=str)),
        "prev_hash": blocker.last_hash or GENESIS,
    }
    row["hash"] = chain_hash(row["prev_hash"], SimpleNamespace(**row))
    blocker.last_seq = row["seq"]
    blocker.last_hash = row["hash"]
    return row


def append_event(session: Session, blocker: Blocker, **fields: Any) -> Event:
    """Append the next link of the blocker's chain to the session."""
    event = Event(**next_link(blocker, **fields))
    session.add(event)
    return event


@dataclass(frozen=True)
class BrokenLink:
    blocker_id: int
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"blocker {self.blocker_id}, event #{self.seq}: {self.reason}"


def verify_chain(
    events: Iterable[Event], blocker_id: int, head: str | None = None
) -> BrokenLink | None:
    """Check one blocker's events (in seq order); return the first broken link, if any."""
    prev = GENESIS
    expected_seq = 1
    for event in events:
        if event.seq != expected_seq:
            return BrokenLink(
                blocker_id,
                expected_seq,
                f"event #{expected_seq} is missing or out of order (found #{event.seq})",
            )
        if event.prev_hash != prev:
            return BrokenLink(
                blocker_id, event.seq, "prev_hash does not match the previous event's hash"
            )
        if chain_hash(prev, event) != event.hash:
            return BrokenLink(blocker_id, event.seq, "content does not match its hash (edited)")
        prev = event.hash
        expected_seq += 1
    if head is not None and head != (prev if expected_seq > 1 else ""):
        return BrokenLink(
            blocker_id,
            expected_seq,
            "the chain ends before the blocker's recorded head (events deleted at the end)",
        )
    return None


def verify_all(session: Session, batch: int = 5000) -> Iterator[BrokenLink]:
    """Stream every chain in (blocker, seq) order and yield the first break of each blocker."""
    heads = dict(session.execute(select(Blocker.id, Blocker.last_hash)).all())
    seen: set[int] = set()
    current: int | None = None
    buffer: list[Event] = []
    last_key = (0, 0)
    while True:
        rows = list(
            session.exec(
                select(Event)
                .where(
                    (Event.blocker_id > last_key[0])
                    | ((Event.blocker_id == last_key[0]) & (Event.seq > last_key[1]))
                )
                .order_by(Event.blocker_id, Event.seq)
                .limit(batch)
            ).scalars()
        )
        for event in rows:
            if event.blocker_id != current:
                if current is not None:
                    broken = verify_chain(buffer, current, heads.get(current))
                    if broken:
                        yield broken
                    seen.add(current)
                current, buffer = event.blocker_id, []
            buffer.append(event)
        if not rows:
            break
        last_key = (rows[-1].blocker_id, rows[-1].seq)
        session.expunge_all()
    if current is not None:
        broken = verify_chain(buffer, current, heads.get(current))
        if broken:
            yield broken
        seen.add(current)
    for blocker_id, head in heads.items():
        if blocker_id not in seen and head:
            yield BrokenLink(
                blocker_id, 1, "the blocker records events but none are left (deleted)"
            )
