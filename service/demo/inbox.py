"""The demo's fake chat robots and the inbox page that shows what reached each group.

Messages arrive here through the real dispatcher over real HTTP, exactly as they would
reach WeCom or DingTalk (DingTalk's signature is checked); nothing takes a shortcut.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlmodel import func, select

from service.models import Blocker, Escalation, Event, Unit
from service.models.blocker import CLOSED_STATES
from workflows.ranking import unit_ranking

PAGE = Path(__file__).with_name("inbox.html")


def _table(title: str, head: str, rows: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><meta charset='utf-8'><title>{title}</title><h2>{title}</h2>"
        f"<table border=1 cellpadding=4><tr>{head}</tr>{rows}</table>"
    )


class Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, **message: Any) -> None:
        with self.lock:
            message["id"] = len(self.messages) + 1
            self.messages.append(message)

    def after(self, after: int) -> list[dict[str, Any]]:
        with self.lock:
            return self.messages[after : after + 500]


def dingtalk_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def router(inbox: Inbox, simulation_ref: dict) -> APIRouter:
    api = APIRouter(prefix="/demo", include_in_schema=False)

    def _group(request: Request, code: str) -> str:
        with request.app.state.db.unit_of_work(readonly=True) as session:
            unit = session.exec(select(Unit).where(Unit.code == code)).first()
        return unit.name if unit else code

    def _received(
        request: Request, platform: str, group: str, body: dict, **fields: Any
    ) -> JSONResponse:
        """What a robot shows in its group, as the chat client would; answered like the platform."""
        kind = body.get("msgtype")
        inbox.add(
            platform=platform,
            group=group,
            group_name=_group(request, group),
            msgtype=kind,
            sim_time=request.app.state.ctx.clock.now()
            .astimezone(request.app.state.settings.tz)
            .isoformat(),
            at=time.time(),
            **fields,
        )
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    @api.post("/robot/wecom/cgi-bin/webhook/send")
    async def wecom(request: Request, key: str) -> JSONResponse:
        body = await request.json()
        part = body.get(body.get("msgtype")) or {}
        return _received(
            request,
            "企业微信",
            key,
            body,
            content=part.get("content", ""),
            mentions=part.get("mentioned_mobile_list", []),
        )

    @api.post("/robot/dingtalk/robot/send")
    async def dingtalk(
        request: Request, access_token: str, timestamp: str = "", sign: str = ""
    ) -> JSONResponse:
        expected = dingtalk_sign(f"SECdemo-{access_token}", timestamp)
        fresh = timestamp.isdigit() and abs(time.time() * 1000 - int(timestamp)) < 3_600_000
        if not fresh or not hmac.compare_digest(expected, sign):
            return JSONResponse({"errcode": 310000, "errmsg": "sign not match"})
        body = await request.json()
        part = body.get(body.get("msgtype")) or {}
        return _received(
            request,
            "钉钉",
            access_token,
            body,
            title=part.get("title", ""),
            content=part.get("text") or part.get("content", ""),
            mentions=(body.get("at") or {}).get("atMobiles", []),
        )

    @api.get("/messages")
    def messages(after: int = 0) -> list[dict[str, Any]]:
        return inbox.after(after)

    @api.get("/state")
    def state(request: Request) -> dict[str, Any]:
        sim = simulation_ref.get("sim")
        with request.app.state.db.unit_of_work(readonly=True) as session:
            by_state = dict(
                session.exec(select(Blocker.state, func.count()).group_by(Blocker.state)).all()
            )
            escalations = session.exec(select(func.count()).select_from(Escalation)).one()
        now = request.app.state.ctx.clock.now().astimezone(request.app.state.settings.tz)
        return {
            "now": now.isoformat(),
            "paused": bool(sim and sim.paused.is_set()),
            "days": sim.days if sim else 0,
            "states": by_state,
            "escalations": escalations,
            "messages": len(inbox.messages),
        }

    @api.post("/pause")
    def pause() -> dict[str, bool]:
        sim = simulation_ref.get("sim")
        if sim:
            sim.paused.set()
        return {"paused": True}

    @api.post("/resume")
    def resume() -> dict[str, bool]:
        sim = simulation_ref.get("sim")
        if sim:
            sim.paused.clear()
        return {"paused": False}

    @api.get("/blockers/{blocker_id}", response_class=HTMLResponse)
    def blocker_page(blocker_id: int, request: Request) -> HTMLResponse:
        """Where the links in chat messages lead: the blocker and its timeline."""
        tz = request.app.state.settings.tz
        with request.app.state.db.unit_of_work(readonly=True) as session:
            blocker = session.get(Blocker, blocker_id)
            if blocker is None:
                return HTMLResponse("<p>没有这个问题事项。</p>", status_code=404)
            events = session.exec(
                select(Event).where(Event.blocker_id == blocker_id).order_by(Event.seq)
            )
            rows = "".join(
                f"<tr><td>{e.seq}</td><td>{e.at.astimezone(tz):%Y-%m-%d %H:%M}</td><td>{escape(e.actor)}</td>"
                f"<td>{escape(e.action)}</td><td>{escape(e.state_before or '')} → {escape(e.state_after)}</td></tr>"
                for e in events
            )
        return HTMLResponse(
            f"<!doctype html><meta charset='utf-8'><title>问题事项 {blocker.id}</title>"
            f"<h2>{escape(blocker.title)}</h2><p>状态：{escape(blocker.state)}　升级层级：{blocker.escalation_level}"
            f"　截止日期：{blocker.deadline or '—'}</p><table border=1 cellpadding=4>"
            f"<tr><th>#</th><th>时间</th><th>操作人</th><th>操作</th><th>状态</th></tr>{rows}</table>"
        )

    @api.get("/blockers", response_class=HTMLResponse)
    def blockers_page(request: Request) -> HTMLResponse:
        """The link under a digest (督办平台): the open blockers, most urgent first."""
        with request.app.state.db.unit_of_work(readonly=True) as session:
            found = session.exec(
                select(Blocker, Unit)
                .join(Unit, Unit.id == Blocker.unit_id, isouter=True)
                .where(Blocker.state.not_in(CLOSED_STATES))
                .order_by(Blocker.due_at, Blocker.id)
                .limit(500)
            )
            rows = "".join(
                f"<tr><td><a href='blockers/{b.id}'>{b.id}</a></td><td>{escape(b.title)}</td>"
                f"<td>{escape(u.name if u else '—')}</td><td>{escape(b.state)}</td>"
                f"<td>{b.deadline or '—'}</td><td>{b.escalation_level}</td></tr>"
                for b, u in found
            )
        return _table(
            "在办问题事项",
            "<th>编号</th><th>事项</th><th>责任单位</th><th>状态</th>"
            "<th>截止日期</th><th>升级层级</th>",
            rows,
        )

    @api.get("/reports/units", response_class=HTMLResponse)
    def units_page(request: Request) -> HTMLResponse:
        """The link under a briefing (查看完整排名): this month's ranking so far."""
        ctx = request.app.state.ctx
        now = ctx.clock.now()
        tz = request.app.state.settings.tz
        start = datetime.combine(now.astimezone(tz).date().replace(day=1), datetime.min.time(), tz)
        with request.app.state.db.unit_of_work(readonly=True) as session:
            ranked = unit_ranking(session, start, now)

        def rate(value: float | None) -> str:
            return "—" if value is None else f"{value * 100:.1f}%"

        rows = "".join(
            f"<tr><td>{r['rank'] or '—'}</td><td>{escape(r['name'])}</td><td>{rate(r['on_time_rate'])}</td>"
            f"<td>{rate(r['response_rate'])}</td><td>{r['overdue']}</td><td>{r['open_blockers']}</td></tr>"
            for r in ranked
        )
        return _table(
            f"{start:%Y年%m月}责任单位排名（截至今日）",
            "<th>排名</th><th>单位</th>"
            "<th>按期办结率</th><th>响应率</th><th>逾期</th><th>在办</th>",
            rows,
        )

    @api.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return api
