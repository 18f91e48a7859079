"""问题事项: blockers and the actions of the closed loop."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response
from pydantic import Field, model_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from service.api.blocker_views import (
    BlockerDetail,
    BlockerOut,
    actor_for,
    blocker_detail,
    blocker_out,
    visibility_clause,
    visible_blocker,
    visible_blocker_or_404,
)
from service.api.common import (
    A_NUMBER,
    ERROR_RESPONSES,
    BodyId,
    Cursor,
    Limit,
    Page,
    RowId,
    Strict,
    decode_cursor,
    page_of,
)
from service.auth import require_scope
from service.deps import Caller, ReadSession, UnitOfWorkRoute, WriteSession
from service.idempotency import idempotent
from service.models import Blocker, Project, Unit
from service.models.blocker import OVERDUE_STATES
from service.problems import Problem
from workflows import engine
from workflows.effects import MAX_WORKING_DAYS

router = APIRouter(
    prefix="/api/v1/blockers",
    tags=["blockers"],
    responses=ERROR_RESPONSES,
    route_class=UnitOfWorkRoute,
)

ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "Not allowed from the current state; see allowed_actions",
        "content": {"application/problem+json": {}},
    },
    412: {
        "description": "If-Match does not match the current version",
        "content": {"application/problem+json": {}},
    },
}


class BlockerCreate(Strict):
    project: str = Field(min_length=1, max_length=64, description="Project code")
    title: str = Field(min_length=1, max_length=300, examples=["项目用地组卷报批进度滞后"])
    description: str | None = Field(
        "", max_length=10000, examples=["土地组卷材料需补充林地使用手续"]
    )
    category: str = Field(min_length=1, max_length=64, examples=["用地"])
    authority_level: Literal["county", "city", "province"] | None = "county"
    reported_by: str | None = Field(None, max_length=200, examples=["项目单位"])
    external_ref: str | None = Field(
        None, min_length=1, max_length=200, examples=["GTZZ-2026-000123"]
    )
    workflow: str | None = Field(None, max_length=64, description="Workflow definition name")


class Deadline(Strict):
    working_days: Annotated[int, Field(ge=1, le=MAX_WORKING_DAYS), A_NUMBER] | None = None
    date: dt.date | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Deadline:
        if (self.working_days is None) == (self.date is None):
            raise ValueError("give exactly one of working_days or date")
        return self


class AssignBody(Strict):
    unit: str = Field(min_length=1, max_length=64, examples=["wy-gov"])
    officer_id: BodyId | None = None
    assisting_units: list[str] | None = Field(default_factory=list, max_length=20)
    deadline: Deadline | None = Field(None, examples=[{"working_days": 10}])
    complexity: Literal["ordinary", "complex"] | None = None


class EmptyBody(Strict):
    pass


class FeedbackBody(Strict):
    note: str = Field(min_length=1, max_length=5000, examples=["已完成林地手续材料补充，正在报批"])
    percent: Annotated[int, Field(ge=0, le=100), A_NUMBER] | None = None


class ResolvedBody(Strict):
    note: str = Field(min_length=1, max_length=5000, examples=["用地批复已下达"])
    evidence: list[str] | str | None = Field(None, examples=[["批复文号：豫政土〔2026〕12号"]])


class VerifyBody(Strict):
    satisfied: bool = Field(strict=True)
    note: str = Field(min_length=1, max_length=5000, examples=["已回访企业，企业满意"])
    deadline: Deadline | None = None


class CloseBody(Strict):
    note: str | None = Field(None, max_length=5000)


class ReasonBody(Strict):
    reason: str = Field(min_length=1, max_length=5000, examples=["涉及跨区域协调，需市级层面协调"])


def _if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    raw = value.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    if not raw.isdigit():
        raise Problem(400, f'If-Match must be a version in quotes, like "3"; got {value!r}.')
    return int(raw)


def _run_action(
    request: Request,
    response: Response,
    session,
    caller,
    blocker_id: RowId,
    action: str,
    payload: dict[str, Any],
    if_match: str | None,
) -> BlockerOut:
    require_scope(caller, "write")
    expected = _if_match(if_match)
    # The bootstrap admin sees everything, so needs no separate look: the engine's locked
    # load answers 404 for a missing blocker just the same.
    if not caller.is_admin and visible_blocker(session, caller, blocker_id) is None:
        exists = session.get(Blocker, blocker_id) is not None
        if exists:
            raise Problem(403, f"Blocker {blocker_id} is outside this key's jurisdiction.")
        raise Problem(404, f"There is no blocker {blocker_id}.")
    try:
        blocker = engine.apply(
            session,
            request.app.state.ctx,
            blocker_id,
            action,
            actor_for(caller),
            payload,
            expected_version=expected,
        )
    except engine.EngineError as exc:
        raise Problem(exc.status, exc.detail, **exc.extra) from exc
    response.headers["ETag"] = f'"{blocker.version}"'
    return blocker_out(session, blocker, request, caller)


def _twin(session, caller, body: BlockerCreate, project: Project) -> Blocker | None:
    """The blocker this source system already created with `external_ref`, if any.

    The same reference for another project is a mistake on one side or the other, not a
    retry: 409, naming the blocker that holds it."""
    if not body.external_ref:
        return None
    twin = session.exec(
        select(Blocker).where(
            Blocker.source == caller.source, Blocker.external_ref == body.external_ref
        )
    ).first()
    if twin is not None and twin.project_id != project.id:
        held_by = session.get(Project, twin.project_id)
        raise Problem(
            409,
            f"external_ref: '{body.external_ref}' is already blocker {twin.id} of project "
            f"'{held_by.code if held_by else twin.project_id}', not of '{project.code}'. "
            "Send that blocker's project, or another reference.",
            field="external_ref",
            blocker_id=twin.id,
        )
    return twin


@router.post(
    "",
    status_code=201,
    response_model=BlockerOut,
    responses={200: {"description": "Already created (same external_ref or Idempotency-Key)"}},
)
def create_blocker(
    body: BlockerCreate, request: Request, response: Response, session: WriteSession, caller: Caller
):
    """Report a blocker (问题事项); it starts in state `collected`.

    Send `Idempotency-Key` to make retries safe; a known `external_ref` from the same
    system answers the existing blocker (200) instead of creating a twin.
    """
    require_scope(caller, "write")

    def create() -> tuple[int, BlockerOut]:
        project = session.exec(select(Project).where(Project.code == body.project)).first()
        if project is None:
            raise Problem(
                422, f"project: there is no project with code '{body.project}'.", field="project"
            )
        county = session.get(Unit, project.county_unit_id)
        if not caller.sees_path(county.path if county else None):
            raise Problem(
                403,
                f"project: '{body.project}' is outside this key's jurisdiction.",
                field="project",
            )
        twin = _twin(session, caller, body, project)
        if twin is not None:
            return 200, blocker_out(session, twin, request, caller)
        fields = body.model_dump(exclude={"project", "workflow"})
        fields.update(project_id=project.id, source=caller.source)
        try:
            # A savepoint: when the same external_ref is being created at this very moment
            # (PostgreSQL), the loser answers the winner's blocker, as a retry would.
            with session.begin_nested():
                blocker = engine.create_blocker(
                    session, request.app.state.ctx, actor_for(caller), fields, body.workflow
                )
        except engine.EngineError as exc:
            raise Problem(exc.status, exc.detail, **exc.extra) from exc
        except IntegrityError:
            twin = _twin(session, caller, body, project)
            if twin is None:
                raise
            return 200, blocker_out(session, twin, request, caller)
        return 201, blocker_out(session, blocker, request, caller)

    answer = idempotent(request, session, caller, body, create)
    # Its version as the ETag, as every read and action has it: ready for If-Match.
    if isinstance(answer, Response):  # the twin (200) or a replay
        version = json.loads(bytes(answer.body)).get("version")
        if version is not None:
            answer.headers["ETag"] = f'"{version}"'
    else:
        response.headers["ETag"] = f'"{answer.version}"'
    return answer


@router.get("", response_model=Page[BlockerOut])
def list_blockers(
    request: Request,
    session: ReadSession,
    caller: Caller,
    state: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    unit: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    project: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    overdue: bool | None = None,
    escalation_level: Annotated[int | None, Query(ge=0, le=10)] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=100, description="Search in titles")
    ] = None,
    external_ref: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Your own ticket number, as reported"),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[BlockerOut]:
    after = decode_cursor(cursor)
    query = select(Blocker).where(Blocker.id > after).order_by(Blocker.id).limit(limit + 1)
    clause = visibility_clause(caller)
    if clause is not None:
        query = query.where(clause)
    if state:
        known = sorted(
            {s for w in request.app.state.ctx.workflows.values() for s in w.definition.states}
        )
        if state not in known:
            raise Problem(
                422,
                f"state: '{state}' is not a state; use one of {', '.join(known)}.",
                field="state",
            )
        query = query.where(Blocker.state == state)
    if unit:
        query = query.where(Blocker.unit_id.in_(select(Unit.id).where(Unit.code == unit)))
    if project:
        query = query.where(
            Blocker.project_id.in_(select(Project.id).where(Project.code == project))
        )
    if escalation_level is not None:
        query = query.where(Blocker.escalation_level == escalation_level)
    if q:
        query = query.where(Blocker.title.contains(q, autoescape=True))
    if external_ref:
        query = query.where(Blocker.external_ref == external_ref)
    if overdue is not None:
        now = request.app.state.ctx.clock.now()
        late = Blocker.state.in_(OVERDUE_STATES) & (Blocker.due_at <= now)
        query = query.where(late if overdue else ~late | Blocker.due_at.is_(None))
    rows = list(session.exec(query))
    return page_of(rows, limit, lambda b: blocker_out(session, b, request, caller))


@router.get("/{blocker_id}", response_model=BlockerDetail)
def get_blocker(
    blocker_id: RowId, request: Request, response: Response, session: ReadSession, caller: Caller
) -> BlockerDetail:
    """A blocker with its timeline (events) and pending timers."""
    blocker = visible_blocker_or_404(session, caller, blocker_id)
    response.headers["ETag"] = f'"{blocker.version}"'
    return blocker_detail(session, blocker, request, caller)


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        pattern=r'^(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})$',
        description='The version read, e.g. "3" (a bare 3 is taken too)',
    ),
]


def _action_route(action: str, body_model: type[Strict], summary: str) -> None:
    def handler(
        blocker_id: RowId,
        request: Request,
        response: Response,
        session: WriteSession,
        caller: Caller,
        body: Annotated[body_model | None, Body()] = None,  # type: ignore[valid-type]
        if_match: IfMatch = None,
    ) -> BlockerOut:
        if body is None:
            try:
                body = body_model()
            except ValueError as exc:
                raise Problem(422, f"A JSON body is required for '{action}'.") from exc
        payload = body.model_dump(mode="json", exclude_none=False)
        return _run_action(
            request, response, session, caller, blocker_id, action, payload, if_match
        )

    # Annotations are strings under `from __future__ import annotations`; the body model
    # is a local, so hand FastAPI the real type.
    handler.__annotations__["body"] = Annotated[body_model | None, Body()]
    handler.__name__ = f"{action}_blocker"
    router.add_api_route(
        f"/{{blocker_id}}/{action}",
        handler,
        methods=["POST"],
        response_model=BlockerOut,
        summary=summary,
        responses=ACTION_RESPONSES,
    )


for _name, _model, _summary in (
    ("assign", AssignBody, "交办: assign to a responsible unit with a deadline"),
    ("acknowledge", EmptyBody, "签收: the responsible unit acknowledges"),
    ("feedback", FeedbackBody, "定期反馈: report progress"),
    ("report_resolved", ResolvedBody, "申请办结: report it resolved"),
    ("verify", VerifyBody, "核验回访: satisfied verifies, not satisfied returns it"),
    ("close", CloseBody, "销号: close"),
    ("withdraw", ReasonBody, "撤销: withdraw"),
    ("request_escalation", ReasonBody, "需市级层面协调: escalate one level at once"),
):
    _action_route(_name, _model, _summary)
