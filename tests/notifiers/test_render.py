"""Every template renders for every channel kind, within the platform's byte limits."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifiers.base import Message
from notifiers.email import EmailNotifier
from notifiers.render import TEMPLATE_KINDS, render, render_digest, truncate_utf8, utf8_len
from service.models import Channel
from tests.notifiers.fakes import SmtpSink, smtp_server
from tests.notifiers.helpers import blocker_context, notifiers_on
from workflows.briefing import briefing_rows

BASE = "https://duban.example.gov.cn"
LONG_TITLE = "征地拆迁补偿标准争议协调" * 700  # ~25 KB of UTF-8


def context_for(kind: str, count: int = 3, **overrides: Any) -> dict[str, Any]:
    if kind in ("digest", "daily_digest"):
        items = [
            {**blocker_context(n, **overrides), "kind": "deadline_reminder"}
            for n in range(1, count + 1)
        ]
        return {"items": items, "unit_name": "滨江县自然资源和规划局", "date": "2025-03-03"}
    return blocker_context(7, level=1, level_label="市综合专班", reason="overdue", **overrides)


def test_a_digest_item_past_its_deadline_is_labelled_overdue_not_a_reminder():
    context = context_for("daily_digest", count=2)
    context["items"][1].update(overdue=True, state="deadline", working_days_left=-2)
    text = render("daily_digest", context, BASE).text
    assert text.count("【到期提醒】") == 1 and text.count("【已逾期】") == 1
    assert text.index("【到期提醒】") < text.index("【已逾期】")


@pytest.mark.parametrize("kind", ["assigned", "escalated", "daily_digest"])
def test_text_people_wrote_cannot_become_a_link_or_a_tag(kind):
    title = "[点此完成签收](http://evil.example/login) <font color=\"warning\">用地审批</font>"
    message = render(kind, context_for(kind, title=title, note="[x](http://evil.example)"), BASE)
    for text in (message.markdown, message.text, message.title):
        assert "[点此完成签收]" not in text and "<font" not in text
    assert "［点此完成签收］(http://evil.exam" in message.markdown  # (a digest shortens titles)


def link_for(kind: str) -> str:
    return f"{BASE}/blockers" if kind in ("digest", "daily_digest") else f"{BASE}/blockers/7"


@pytest.mark.parametrize("kind", TEMPLATE_KINDS)
def test_template_shows_the_facts(kind):
    message = render(kind, context_for(kind), BASE, mentions=["13800000001"])
    for text in (message.markdown, message.text):
        assert "滨江大道综合改造工程" in text
        assert "用地预审意见未出具" in text
        assert "滨江县自然资源和规划局" in text
        assert "2025年3月10日（周一，剩余 5 个工作日）" in text
        assert not re.search(r"(?<![\d-])20\d\d-\d\d-\d\d(?![\d-])", text), text  # no ISO dates
        assert link_for(kind) in text
    assert message.title and "\n" not in message.title
    assert message.link == link_for(kind)
    assert message.mentions == ("13800000001",)


@pytest.mark.parametrize("escalated_now", [False, True])
@pytest.mark.parametrize("kind", TEMPLATE_KINDS)
def test_the_link_stands_on_its_own_line(kind, escalated_now):
    """No sentence runs into the link: a block tag ending a line swallows its newline."""
    message = render(kind, context_for(kind, escalated_now=escalated_now), BASE)
    link = re.escape(link_for(kind))
    assert re.search(rf"[。：]\n\n\[[^\]]+\]\({link}\)$", message.markdown), message.markdown
    assert re.search(rf"[。：）]\n[^\n：]+：{link}$", message.text), message.text


def test_deadline_wording():
    overdue = render(
        "escalated", blocker_context(1, working_days_left=-2, overdue=True, level=2), BASE
    )
    assert "已逾期 2 个工作日" in overdue.text and "第 2 级" in overdue.text
    today = render("deadline_reminder", blocker_context(1, working_days_left=0), BASE)
    assert "今日到期" in today.text
    # Due on Saturday, seen on Friday: no working day left, yet not due today.
    saturday = blocker_context(1, deadline="2026-10-03", working_days_left=0, days_left=1)
    day_off = render("deadline_reminder", {**saturday, "working_today": True}, BASE)
    assert "今日到期" not in day_off.text
    assert "办理期限：2026年10月3日（周六，还有 1 天到期，今天是到期前最后一个工作日）" in day_off.text
    assert "办理期限还有 1 天到期，今天是到期前最后一个工作日，请抓紧推进" in day_off.text
    # Read on a day off itself (an urgent message on a Sunday): no working day in between.
    sunday = render("deadline_reminder", {**saturday, "days_left": 6, "working_today": False}, BASE)
    assert "（周六，还有 6 天到期，其间无工作日）" in sunday.text
    none = render("assigned", blocker_context(1, deadline=None, working_days_left=None), BASE)
    assert "办理期限：未设定" in none.text
    ack = render("assigned", blocker_context(1, acknowledge_by="2025-03-04 18:00"), BASE)
    assert "请于 2025年3月4日（周二）18:00 前登录督办平台签收" in ack.text


def test_escalations_are_headed_by_why_and_finished_work_is_not_overdue():
    for reason, heading, why in (
        ("overdue", "【逾期升级】", "因逾期未办结"),
        ("unacknowledged", "【未签收升级】", "因逾期未签收"),
        ("requested", "【申请提级协调】", "因责任单位申请市级层面协调"),
        ("authority", "【提级督办】", "因按事权分级须由上级协调解决"),
        ("something_new", "【升级督办】", "因督办需要"),
    ):
        message = render("escalated", blocker_context(1, level=1, reason=reason), BASE)
        assert message.title.startswith(heading) and why in message.text, (reason, message.text)
        assert reason not in message.text
    # Resolved on time, then verified and closed days later: not "overdue".
    for state, said in (("resolved", "已申请办结，待核验"), ("verified", "已办结"), ("closed", "已办结")):
        late = blocker_context(1, state=state, working_days_left=-3, overdue=False)
        assert "已逾期" not in render("closed", late, BASE).text
        # Reported resolved is not finished until the enterprise is satisfied.
        assert f"（周一，{said}）" in render("verify_reminder", late, BASE).text


def test_digest_merges_mentions_and_links():
    entries = [
        ("assigned", blocker_context(1), ["13800000001"]),
        ("escalated", blocker_context(2, level=1), ["13800000002", "13800000001"]),
    ]
    message = render_digest(entries, BASE)
    assert message.mentions == ("13800000001", "13800000002")
    assert f"{BASE}/blockers/1" in message.text and f"{BASE}/blockers/2" in message.markdown
    assert "【交办】" in message.text and "【逾期升级】" in message.text


def test_unknown_template_is_refused():
    with pytest.raises(LookupError):
        render("webhook", {}, BASE)
    with pytest.raises(LookupError):
        render("_macros", {}, BASE)


# --------------------------------------------------------------------------- truncation
def test_truncate_keeps_short_text():
    assert truncate_utf8("短消息\nhttp://x/1", 100, "http://x/1") == "短消息\nhttp://x/1"


def test_truncate_cuts_on_a_character_boundary_and_keeps_the_link():
    text = "第一行\n" + "很长的内容" * 100 + "\n详情：http://x/blockers/9\n末尾"
    out = truncate_utf8(text, 120, "http://x/blockers/9")
    assert utf8_len(out) <= 120
    assert out.endswith("…\n详情：http://x/blockers/9")
    assert out.startswith("第一行")


@given(
    body=st.text(min_size=0, max_size=400),
    limit=st.integers(min_value=40, max_value=600),
)
def test_truncate_property(body, limit):
    link = "http://x/blockers/1"
    text = f"{body}\n{link}"
    out = truncate_utf8(text, limit, link)
    assert utf8_len(out) <= limit
    out.encode("utf-8")  # whole characters only
    if utf8_len(text) > limit:
        assert "…" in out and out.endswith(link)
    else:
        assert out == text


# --------------------------------------------------------------------------- real platforms


@pytest.fixture
def platform(request, wecom, dingtalk, feishu):
    fake = {"wecom": wecom, "dingtalk": dingtalk, "feishu": feishu}[request.param]
    key = uuid.uuid4().hex  # a robot per test: the rate limits never interfere
    secret = None if request.param == "wecom" else f"SEC{key}"
    if request.param == "wecom":
        fake.keys.add(key)
    elif request.param == "dingtalk":
        fake.robots[key] = secret
    else:
        fake.bots[key] = secret
    channel = Channel(unit_id=1, kind=request.param, url=fake.url(key), secret=secret)
    return request.param, fake, channel


def send(notifier, channel: Channel, message: Message):
    request = notifier.build(channel, message)
    with httpx.Client(trust_env=False) as client:
        response = client.request(
            request.method, request.url, headers=request.headers, content=request.body
        )
    return notifier.interpret(response)


@pytest.mark.parametrize("platform", ["wecom", "dingtalk", "feishu"], indirect=True)
@pytest.mark.parametrize("kind", TEMPLATE_KINDS)
@pytest.mark.parametrize("mentions", [(), ("13800000001", "13900000002")], ids=["plain", "at"])
def test_every_template_reaches_every_chat_platform(platform, kind, mentions, clock):
    name, fake, channel = platform
    notifier = notifiers_on(clock)[name]
    message = render(kind, context_for(kind), BASE, mentions=mentions)
    outcome = send(notifier, channel, message)
    assert outcome.ok, outcome.reason
    received = fake.messages[-1]
    assert link_for(kind) in received.content
    assert "用地预审意见未出具" in received.content
    if name == "wecom":
        assert received.msgtype == ("text" if mentions else "markdown")
        assert received.mentions == list(mentions)
    if name == "dingtalk":
        assert fake.effective[-1] == list(mentions)  # every @ really notifies
    if name == "feishu":
        # A button says what it opens; a custom bot cannot @ by mobile, so no number is
        # printed into the group for nobody to be notified.
        assert received.buttons == ["查看完整排名" if kind in ("monthly_briefing", "ranked_last") else
                                    "查看全部事项" if kind in ("digest", "daily_digest") else "查看详情"]
        assert not any(mobile in received.content for mobile in mentions)


@pytest.mark.parametrize("platform", ["wecom", "dingtalk", "feishu"], indirect=True)
@pytest.mark.parametrize("kind", TEMPLATE_KINDS)
@pytest.mark.parametrize("mentions", [(), ("13800000001",)], ids=["plain", "at"])
def test_oversized_messages_are_cut_with_ellipsis_and_link(platform, kind, mentions, clock):
    name, fake, channel = platform
    notifier = notifiers_on(clock)[name]
    # Digests show short titles: they overflow by the number of items instead.
    context = context_for(kind, count=150, title=LONG_TITLE)
    message = render(kind, context, BASE, mentions=mentions)
    assert not notifier.fits(message)
    outcome = send(notifier, channel, message)
    assert outcome.ok, outcome.reason  # the fake answers 40058 / 460101 / 9499 if too big
    content = fake.messages[-1].content
    assert "…" in content
    assert link_for(kind) in content.rsplit("…", 1)[1]
    if name == "dingtalk":
        assert fake.effective[-1] == list(mentions)


def briefing_context(units: int, times: int) -> dict[str, Any]:
    rows = [
        {"rank": n, "unit_id": n, "name": f"新乡高新技术产业开发区第{n}管理委员会", "assigned": 13,
         "overdue": 10 + n % 3, "open_blockers": 14, "on_time_rate": "66.7%", "response_rate": "100.0%",
         "satisfaction_rate": "100.0%"}
        for n in range(1, units + 1)
    ]
    last = {"name": rows[-1]["name"], "unit_id": units, "times": times}
    return {"month": "2026年3月", "units": units, "rows": rows, "last": last, "unit_name": "市综合专班"}


@pytest.mark.parametrize("platform", ["wecom", "dingtalk", "feishu"], indirect=True)
@pytest.mark.parametrize("units", [2, 20, 49])
def test_the_monthly_briefing_reaches_every_chat_platform(platform, units, clock):
    name, fake, channel = platform
    notifier = notifiers_on(clock)[name]
    message = render("monthly_briefing", briefing_context(units, 1), BASE)
    outcome = send(notifier, channel, message)
    assert outcome.ok, outcome.reason
    content = fake.messages[-1].content
    assert "2026年3月" in content and f"{BASE}/reports/units" in content
    # Long names, two-digit counts, 49 units (Ruzhou): the unit named last is never cut off.
    assert f"第{units}管理委员会排名末位，予以通报批评。" in content


@pytest.mark.parametrize("platform", ["wecom", "dingtalk", "feishu"], indirect=True)
def test_a_unit_escalated_for_ranking_last_reaches_every_chat_platform(platform, clock):
    name, fake, channel = platform
    context = {"escalation_id": 7, "month": "2026年4月", "ranked_unit": "获嘉县人民政府", "times": 2,
               "meeting": "分管领导约谈", "level": 2, "level_label": "分管副市长",
               "recipient_unit": "常务副市长办公室"}
    outcome = send(notifiers_on(clock)[name], channel, render("ranked_last", context, BASE))
    assert outcome.ok, outcome.reason
    content = fake.messages[-1].content
    assert "【排名靠后升级】获嘉县人民政府连续 2 个月排名末位" in content
    assert "截至2026年4月" in content and "由分管领导约谈" in content and "常务副市长办公室" in content


def test_forty_units_tied_for_last_leave_the_table_in_the_message():
    context = briefing_context(41, 1)
    context["lasts"] = [{"name": r["name"], "unit_id": r["unit_id"], "times": 1} for r in context["rows"][1:]]
    text = render("monthly_briefing", context, BASE).markdown
    assert "新乡高新技术产业开发区第2管理委员会、" in text and "等 40 个单位并列排名末位，予以通报批评。" in text
    # One line, then the table: the rows start within the first 600 bytes (they used to
    # start after 40 sentences, ~4 KB, and the 4,096-byte cut left one row).
    assert len(text[: text.index("\n1. ")].encode()) < 600


def test_the_briefing_escalates_the_wording_for_repeated_last_places():
    said = {
        times: render("monthly_briefing", briefing_context(3, times), BASE).text
        for times in (1, 2, 3, 5)
    }
    assert said[1].count("约谈") == 0 and "通报批评。" in said[1]
    assert "连续 2 个月排名末位，由分管领导约谈。" in said[2]
    assert "连续 3 个月排名末位，由主要领导约谈。" in said[3]
    assert "连续 5 个月排名末位，由主要领导约谈。" in said[5]
    # Of 35 units, the top 19 and the last are listed, a gap marked between them; units
    # tied for 4th share the place, with no gap mark after them.
    many = briefing_context(35, 1)
    rows = [{**r, "rank": 4 if r["rank"] == 5 else r["rank"], "on_time_rate": None,
             "response_rate": 1.0, "satisfaction_rate": None} for r in many["rows"]]
    many["rows"] = briefing_rows(rows)
    assert len(many["rows"]) == 20 and [r["gap_before"] for r in many["rows"]] == [False] * 19 + [True]
    lines = render("monthly_briefing", many, BASE).text.splitlines()
    at = lines.index("…")
    assert lines[at - 1].startswith("19. ") and lines[at + 1].startswith("35. 新乡高新技术产业开发区第35管理委员会")
    assert lines.count("…") == 1 and sum(line.startswith("4. ") for line in lines) == 2


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    controller = smtp_server(sink)
    yield sink, controller.port
    controller.stop()


@pytest.mark.parametrize("kind", TEMPLATE_KINDS)
def test_every_template_goes_by_email(kind, smtp):
    sink, port = smtp
    sink.envelopes.clear()
    url = f"smtp://127.0.0.1:{port}/duban@example.gov.cn?from=noreply@example.gov.cn"
    channel = Channel(unit_id=1, kind="email", url=url)
    message = render(kind, context_for(kind), BASE, delivery_id="abc123")
    outcome = EmailNotifier().deliver(channel, message)
    assert outcome.ok, outcome.reason
    (envelope,) = sink.envelopes
    assert envelope.rcpt_tos == ["duban@example.gov.cn"]
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert mail["Subject"] == message.title
    assert mail["Message-ID"] == "<abc123@duban>"
    body = mail.get_content()
    assert "用地预审意见未出具" in body and link_for(kind) in body


@pytest.mark.parametrize("platform", ["wecom", "dingtalk", "feishu"], indirect=True)
@pytest.mark.parametrize("mentions", [(), ("13800000001",)], ids=["plain", "at"])
def test_a_long_daily_digest_keeps_whole_items_and_says_how_many_it_left_out(platform, mentions, clock):
    """Cut to the platform's limit, a list loses whole items from its end, never half a
    line or half a link, and still gives the totals, the count left out and its closing."""
    name, fake, channel = platform
    count = 400 if name == "dingtalk" else 90  # DingTalk takes 20,000 bytes
    context = context_for("daily_digest", count=count, title=LONG_TITLE, unit_name="新乡高新技术产业开发区管理委员会经济发展局")
    for item in context["items"][:10]:
        item.update(overdue=True, state="deadline", working_days_left=-3)
    message = render("daily_digest", context, BASE, mentions=mentions)
    assert not notifiers_on(clock)[name].fits(message)
    outcome = send(notifiers_on(clock)[name], channel, message)
    assert outcome.ok, outcome.reason
    content = fake.messages[-1].content
    listed = re.findall(r"^(\d+)\. ", content, flags=re.M)
    assert 3 <= len(listed) < count and listed == [str(n) for n in range(1, len(listed) + 1)]
    assert f"需关注事项 {count} 件（已逾期、临近到期及升级至本单位的事项），其中已逾期 10 件" in content
    assert f"另有 {count - len(listed)} 件未列出" in content
    assert "请按期签收、反馈、办结" in content and link_for("daily_digest") in content
    if name != "wecom" or not mentions:  # markdown: every link is whole
        assert content.count("](") == content.count(")｜") + 1  # the items' links and the closing one
