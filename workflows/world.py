"""What one step of the gate reads around a blocker, and where its new rows go.

The gate reads the same reference data for every blocker it touches: units and the ladder,
the project, channels and subscriptions, who to @. A ``World`` answers those reads and
remembers the answers for its own life, which is one action (``engine.apply``) or one
sweep batch (``workflows.batch``). In a batch the new rows (escalations, notifications)
are collected as plain rows and inserted set-wise at the end, instead of one ORM object
each; the answers are the same either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy import true
from sqlmodel import Session, SQLModel, select

from service.db import among, note_outbox
from service.models import (
    ApiKey,
    Channel,
    Escalation,
    Notification,
    Officer,
    Project,
    Unit,
    WebhookSubscription,
)
from workflows import ladder
from workflows.bulk import insert_rows
from workflows.calendar import WorkingDayCalendar
from workflows.definition import Definition

MENTION_ROLES = ("lead", "leader", "liaison")
OPEN_ENTRY = ("open", "acknowledged")  # escalation entries still in their level's queue
MAX_MENTIONS = 5


class World:
    def __init__(self, session: Session, *, bulk: bool = False) -> None:
        self.session = session
        self.bulk = bulk
        self._memo: dict[tuple, Any] = {}
        self._escalated: set[tuple[int, str]] | None = None
        self._escalated_to: set[tuple[int, int]] = set()  # (blocker, receiving unit)
        self._open_at: set[tuple[int, int]] = set()  # (blocker, level) still in a queue
        self._rows: dict[type[SQLModel], dict[int, Any]] = {Unit: {}, Project: {}, Officer: {}}
        self.rows: dict[type[SQLModel], list[dict[str, Any]]] = {}

    def _once(self, key: tuple, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # ----------------------------------------------------------------- preloading (batches)

    def preload(self, blockers: list[Any]) -> None:
        """Read what a batch of blockers will need in a few set-wise queries, not per blocker:
        their projects, officers and home units, and the escalation steps already taken."""
        self._load(Project, {b.project_id for b in blockers})
        self._load(Officer, {b.officer_id for b in blockers if b.officer_id})
        counties = {p.county_unit_id for p in self._rows[Project].values() if p is not None}
        self._load(Unit, {b.unit_id for b in blockers if b.unit_id} | counties)
        self._escalated = set()
        for bid, step, target, level, status in self.session.exec(
            select(
                Escalation.blocker_id,
                Escalation.step,
                Escalation.target_unit_id,
                Escalation.level,
                Escalation.status,
            ).where(among(self.session, Escalation.blocker_id, [b.id for b in blockers]))
        ):
            self._escalated.add((bid, step))
            self._escalated_to.add((bid, target))
            if status in OPEN_ENTRY:
                self._open_at.add((bid, level))

    def _load(self, model: type[SQLModel], ids: set[int]) -> None:
        wanted = sorted(i for i in ids if i is not None)
        if wanted:
            found = self.session.exec(select(model).where(among(self.session, model.id, wanted)))
            self._rows[model].update((row.id, row) for row in found)

    # ----------------------------------------------------------------------------- reads

    def _get(self, model: type[SQLModel], row_id: int | None) -> Any:
        if not row_id:
            return None
        rows = self._rows[model]
        if row_id not in rows:
            rows[row_id] = self.session.get(model, row_id)
        return rows[row_id]

    def unit(self, unit_id: int | None) -> Unit | None:
        return self._get(Unit, unit_id)

    def project(self, project_id: int | None) -> Project | None:
        return self._get(Project, project_id)

    def home(self, blocker: Any) -> Unit | None:
        """Where the blocker sits: its responsible unit, or its project's county before that."""
        unit = self.unit(blocker.unit_id)
        if unit is None:
            project = self.project(blocker.project_id)
            unit = self.unit(project.county_unit_id) if project else None
        return unit

    def receiver(self, definition: Definition, level: int, home: Unit, category: str) -> Unit:
        return self._once(
            ("receiver", definition.name, level, home.id, category),
            lambda: ladder.receiver_for(self.session, definition, level, home, category),
        )

    def general_taskforce(self, home: Unit) -> Unit:
        return self._once(
            ("taskforce", home.id), lambda: ladder.general_taskforce(self.session, home)
        )

    def open_at(self, blocker_id: int, level: int) -> bool:
        """Whether the blocker has an entry at `level` still in that level's queue."""
        if (blocker_id, level) in self._open_at or self.bulk:
            return (blocker_id, level) in self._open_at  # preloaded, plus this batch's
        found = self.session.exec(
            select(Escalation.id).where(
                Escalation.blocker_id == blocker_id,
                Escalation.level == level,
                Escalation.status.in_(OPEN_ENTRY),
            )
        ).first()
        return found is not None

    def escalated(self, blocker_id: int, step: str) -> bool:
        """Whether this escalation step of the blocker was taken already."""
        if self._escalated is not None and (blocker_id, step) in self._escalated:
            return True
        if self.bulk:
            return False  # preloaded, plus what this batch added (see `add`)
        found = self.session.exec(
            select(Escalation.id).where(
                Escalation.blocker_id == blocker_id, Escalation.step == step
            )
        ).first()
        return found is not None

    def chat_channels(self, unit_id: int) -> list[int]:
        """The unit's enabled channels, except those that carry webhook subscriptions."""

        def compute() -> list[int]:
            return list(
                self.session.exec(
                    select(Channel.id)
                    .where(
                        Channel.unit_id == unit_id,
                        Channel.enabled == True,  # noqa: E712
                        Channel.id.not_in(subscription_channels()),
                    )
                    .order_by(Channel.id)
                )
            )

        return self._once(("channels", unit_id), compute)

    def mentions(self, blocker: Any, unit: Unit) -> list[str]:
        """Whom to @ in the unit's group: the blocker's officer there, else the unit's leads."""
        if blocker.officer_id and blocker.unit_id == unit.id:
            officer = self._get(Officer, blocker.officer_id)
            if officer is not None and officer.active:
                return [officer.mobile]

        return list(self._once(("leads", unit.id), lambda: unit_leads(self.session, unit.id)))

    def _subscriptions(self) -> list[WebhookSubscription]:
        """Every subscription except those of a revoked key: revoking a key ends them too."""

        def compute() -> list[WebhookSubscription]:
            query = (
                select(WebhookSubscription)
                .outerjoin(ApiKey, ApiKey.id == WebhookSubscription.api_key_id)
                .where(ApiKey.revoked_at.is_(None))
            )
            return list(self.session.exec(query))

        return self._once(("subscriptions",), compute)

    def has_subscriptions(self) -> bool:
        return any(sub.channel_id is not None for sub in self._subscriptions())

    def subscribers(self, blocker: Any, names: frozenset[str]) -> list[int]:
        """Channels of the webhook subscriptions that want one of `names` about `blocker`:
        those whose key sees it — under their unit, escalated to their unit, or created by
        their key — and the admin's."""
        home = self.home(blocker)
        out = []
        for sub in self._subscriptions():
            if sub.channel_id is None:
                continue
            if not names & set(sub.events) and "*" not in sub.events:
                continue
            if sub.unit_id is not None:
                owner = self.unit(sub.unit_id)
                under = owner is not None and home is not None and home.path.startswith(owner.path)
                mine = sub.api_key_id is not None and sub.api_key_id == blocker.created_by_key_id
                if not (under or mine or self.escalated_to(blocker.id, sub.unit_id)):
                    continue
            out.append(sub.channel_id)
        return out

    def escalated_to(self, blocker_id: int, unit_id: int) -> bool:
        """Whether the blocker was ever escalated to this unit (in this batch included)."""
        if (blocker_id, unit_id) in self._escalated_to:
            return True
        if self.bulk:
            return False  # preloaded, plus what this batch added (see `add`)
        return self._once(
            ("escalated_to", blocker_id, unit_id),
            lambda: (
                self.session.exec(
                    select(Escalation.id).where(
                        Escalation.blocker_id == blocker_id, Escalation.target_unit_id == unit_id
                    )
                ).first()
                is not None
            ),
        )

    def working_days_left(self, cal: WorkingDayCalendar, today: date, deadline: date) -> int:
        return self._once(
            ("days", today, deadline), lambda: cal.working_days_between(today, deadline)
        )

    # ---------------------------------------------------------------------------- writes

    def add(self, model: type[SQLModel], row: dict[str, Any]) -> None:
        """A new row: an ORM object now, or (in bulk) one row of a set-wise insert later."""
        if model is Escalation:
            self._escalated_to.add((row["blocker_id"], row["target_unit_id"]))
            self._open_at.add((row["blocker_id"], row["level"]))
            if self._escalated is not None:
                self._escalated.add((row["blocker_id"], row["step"]))
        if self.bulk:
            self.rows.setdefault(model, []).append(row)
            if model is Notification:
                note_outbox(self.session)  # no ORM flush will notice these rows
        else:
            self.session.add(model(**row))

    def insert_collected(self) -> None:
        for model, rows in self.rows.items():
            insert_rows(self.session, model.__table__, rows)
        self.rows = {}


def subscription_channels() -> Any:
    """The ids of the channels behind webhook subscriptions (not any unit's group)."""
    return select(WebhookSubscription.channel_id).where(WebhookSubscription.channel_id.is_not(None))


def unit_leads(session: Session, unit_id: int) -> list[str]:
    """The mobiles to @ in a unit's group about the unit itself: its leads and liaisons."""
    rows = session.exec(
        select(Officer.mobile)
        .where(
            Officer.unit_id == unit_id, Officer.role.in_(MENTION_ROLES), Officer.active == true()
        )
        .order_by(Officer.id)
    )
    return list(rows)[:MAX_MENTIONS]


def chunks(ids: list, size: int = 900) -> Iterable[list]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]
