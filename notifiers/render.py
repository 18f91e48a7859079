"""Render outbox rows into :class:`Message` objects with the Jinja2 templates.

Each ``templates/<kind>.j2`` defines three blocks — ``title``, ``markdown`` and ``text`` —
so one file keeps the rich and the plain rendering of a message side by side. Shared
wording (deadline, escalation level, labels) lives in ``templates/_macros.j2``, which is
handed to every block as ``m``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound

from notifiers.base import Message

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
ELLIPSIS = "…"
SHORT_TITLE = 40  # characters of a blocker title in headings and subjects

# The outbox template names that have a template (blocker.yaml notify + escalation + digests).
TEMPLATE_KINDS = (
    "assigned",
    "acknowledge_reminder",
    "deadline_reminder",
    "feedback_reminder",
    "escalated",
    "returned",
    "resolved",
    "closed",
    "verify_reminder",
    "daily_digest",
    "digest",
)
# Messages about units rather than blockers: the briefing, and a unit escalated for 约谈.
REPORT_KINDS = ("monthly_briefing", "ranked_last")


def stands_alone(row: Any) -> bool:
    """A row never merged into a digest of a robot's backlog: it is a list itself."""
    return row.kind in ("daily_digest", "digest", *REPORT_KINDS)


_env = Environment(
    loader=FileSystemLoader(str(TEMPLATE_DIR)),
    autoescape=False,  # chat markdown and plain text, not HTML
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


WEEKDAYS = "一二三四五六日"


def cn_date(value: Any, note: str = "") -> str:
    """ "2026-03-13" (or "2026-03-13 18:00") as officials write it: 2026年3月13日（周五）
    (18:00), with `note` inside the brackets. Anything else as it is."""
    text = str(value)
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        return text
    at = text[10:].strip()
    said = f"{day.year}年{day.month}月{day.day}日（周{WEEKDAYS[day.weekday()]}{'，' + note if note else ''}）"
    return f"{said}{at}" if at else said


_env.filters["cn_date"] = cn_date


class UnknownTemplate(LookupError):
    pass


def _template(kind: str) -> Template:
    if kind.startswith("_") or kind not in TEMPLATE_KINDS + REPORT_KINDS:
        raise UnknownTemplate(f"no template for notification kind {kind!r}")
    try:
        return _env.get_template(f"{kind}.j2")
    except TemplateNotFound as exc:  # pragma: no cover - packaging error
        raise UnknownTemplate(f"template file {kind}.j2 is missing") from exc


def blocker_link(base_url: str, blocker_id: Any) -> str:
    return f"{base_url.rstrip('/')}/blockers/{blocker_id}"


# What the chat platforms' markdown reads as a link or an HTML tag, in text that people and
# other systems wrote: shown as the full-width forms, which read the same to an official.
_INERT = str.maketrans({"[": "［", "]": "］", "<": "＜", ">": "＞"})


def inert(value: Any) -> str:
    """Free text with no markup: a title such as "[点此签收](http://…)" stays text."""
    return str(value or "").translate(_INERT)


def _view(context: Mapping[str, Any], base_url: str, kind: str | None = None) -> dict[str, Any]:
    """The template's view of one blocker: the outbox context with defaults and its link."""
    blocker_id = context.get("blocker_id")
    title = inert(context.get("title"))
    return {
        "kind": kind or context.get("kind", ""),
        "blocker_id": blocker_id,
        "title": title,
        "short_title": title if len(title) <= SHORT_TITLE else title[: SHORT_TITLE - 1] + ELLIPSIS,
        "category": inert(context.get("category")),
        "state": context.get("state") or "",
        "project_code": context.get("project_code") or "",
        "project_name": inert(context.get("project_name")),
        "unit_name": inert(context.get("unit_name")),
        "recipient_unit": inert(context.get("recipient_unit")),
        "deadline": context.get("deadline"),
        "working_days_left": context.get("working_days_left"),
        "days_left": context.get("days_left"),
        "working_today": bool(context.get("working_today")),
        "overdue": bool(context.get("overdue")),
        "level": int(context.get("level") or 0),
        "level_label": context.get("level_label") or "",
        "reason": context.get("reason") or "",
        "note": inert(context.get("note")),
        "acknowledge_by": context.get("acknowledge_by") or "",
        "escalated_now": bool(context.get("escalated_now")),
        "link": blocker_link(base_url, blocker_id) if blocker_id is not None else base_url,
    }


def _render_blocks(template: Template, variables: dict[str, Any]) -> tuple[str, str, str]:
    out = []
    for name in ("title", "markdown", "text"):
        ctx = template.new_context(variables)
        out.append("".join(template.blocks[name](ctx)).strip())
    title, markdown, text = out
    return " ".join(title.split()), markdown, text


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if value and value not in seen:
            seen[value] = None
    return tuple(seen)


def render(
    kind: str,
    context: Mapping[str, Any],
    base_url: str,
    *,
    mentions: Sequence[str] = (),
    event_type: str = "",
    delivery_id: str = "",
) -> Message:
    """Render one outbox row. ``digest`` and ``daily_digest`` take ``context["items"]``:
    a list of blocker contexts, each with its own ``kind`` (the template it came from)."""
    template = _template(kind)
    variables: dict[str, Any] = {"m": _env.get_template("_macros.j2").module}
    shorter = None
    if kind in ("digest", "daily_digest"):
        items = [_view(item, base_url) for item in context.get("items", ())]
        variables["items"] = items
        more = int(context.get("more") or 0)  # items left out to fit a platform's limit
        variables["c"] = {
            "date": context.get("date") or "",
            "unit_name": context.get("unit_name") or context.get("recipient_unit") or "",
            "total": int(context.get("total") or len(items) + more),
            "overdue_count": int(
                context.get("overdue_count") or sum(1 for item in items if item["overdue"])
            ),
            "more": more,
        }
        link = f"{base_url.rstrip('/')}/blockers"
        listed, whole = list(context.get("items", ())), variables["c"]

        def shorter(keep: int) -> Message:
            fewer = {**context, "items": listed[:keep], "more": more + len(listed) - keep}
            fewer |= {"total": whole["total"], "overdue_count": whole["overdue_count"]}
            return render(kind, fewer, base_url, mentions=mentions, event_type=event_type,
                          delivery_id=delivery_id)  # fmt: skip
    elif kind in REPORT_KINDS:
        variables["c"] = {"rows": [], "last": None, "month": "", "units": 0, **context}
        link = f"{base_url.rstrip('/')}/reports/units"
    else:
        view = _view(context, base_url, kind)
        variables["c"] = view
        link = view["link"]
    variables["link"] = link
    title, markdown, text = _render_blocks(template, variables)
    return Message(
        title=title,
        markdown=markdown,
        text=text,
        mentions=_unique(mentions),
        link=link,
        link_label=str(variables["m"].link_label(kind)).strip(),
        items=len(variables.get("items") or ()),
        shorter=shorter,
        event_type=event_type,
        delivery_id=delivery_id,
        payload=dict(context),
    )


def render_digest(
    entries: Sequence[tuple[str, Mapping[str, Any], Sequence[str]]], base_url: str
) -> Message:
    """One message for several rows: (kind, context, mentions) each; mentions are merged."""
    items = [{**context, "kind": kind} for kind, context, _ in entries]
    mentions = [mobile for _, _, row_mentions in entries for mobile in row_mentions]
    return render("digest", {"items": items}, base_url, mentions=mentions)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that is at most ``max_bytes`` in UTF-8."""
    if max_bytes <= 0:
        return ""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def fit(message: Message, max_bytes: int, text_of: Callable[[Message], str]) -> str:
    """The message's text (`text_of` picks markdown or plain) in `max_bytes` of UTF-8. A list
    (a digest) keeps as many whole items as fit, in order, and says how many it left out
    (另有 N 件未列出), with its heading, totals and closing lines; anything else is cut by
    `truncate_utf8`."""
    text = text_of(message)
    if utf8_len(text) <= max_bytes or message.shorter is None or not message.items:
        return truncate_utf8(text, max_bytes, message.link)
    best, low, high = None, 0, message.items - 1
    while low <= high:  # the most items that fit
        middle = (low + high) // 2
        candidate = text_of(message.shorter(middle))
        if utf8_len(candidate) <= max_bytes:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best if best is not None else truncate_utf8(text, max_bytes, message.link)


def truncate_utf8(text: str, max_bytes: int, link: str = "") -> str:
    """Fit ``text`` in ``max_bytes`` of UTF-8: cut on a character boundary, append "…", and
    keep the (last) line that carries ``link`` so the reader can still open the blocker."""
    if utf8_len(text) <= max_bytes:
        return text
    lines = text.split("\n")
    link_line = ""
    if link:
        for index in range(len(lines) - 1, -1, -1):
            if link in lines[index]:
                link_line = lines.pop(index)
                break
    body = "\n".join(lines).rstrip()
    tail = f"{ELLIPSIS}\n{link_line}" if link_line else ELLIPSIS
    if utf8_len(tail) > max_bytes:  # even the link does not fit: cut everything
        return cut_utf8(text, max_bytes - utf8_len(ELLIPSIS)) + ELLIPSIS
    return cut_utf8(body, max_bytes - utf8_len(tail)).rstrip() + tail
