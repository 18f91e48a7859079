"""E-mail channel through the dispatcher, against an aiosmtpd server on loopback."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator

import pytest

from notifiers.email import parse_smtp_url
from tests.notifiers.fakes import SmtpSink, free_port, smtp_server
from tests.notifiers.helpers import create_channel, create_notifications, make_dispatcher, rows


@pytest.fixture
def sink() -> SmtpSink:
    return SmtpSink(refuse={"nobody@example.gov.cn"})


@pytest.fixture
def smtp_port(sink) -> Iterator[int]:
    controller = smtp_server(sink)
    yield controller.port
    controller.stop()


def test_url_format():
    target = parse_smtp_url(
        "smtp://mail.example.gov.cn/a@x.gov.cn,b%40x.gov.cn?from=d@x.gov.cn&user=u"
    )
    assert (target.host, target.port, target.sender) == ("mail.example.gov.cn", 25, "d@x.gov.cn")
    assert target.recipients == ("a@x.gov.cn", "b@x.gov.cn") and target.user == "u"
    assert parse_smtp_url("smtps://mail.example.gov.cn/a@x.gov.cn").port == 465
    with pytest.raises(ValueError, match="recipient"):
        parse_smtp_url("smtp://mail.example.gov.cn/")


def test_reminder_is_mailed_in_utf8(db, clock, sink, smtp_port):
    url = f"smtp://127.0.0.1:{smtp_port}/duban@example.gov.cn,leader@example.gov.cn"
    channel = create_channel(db, "email", url)
    (nid,) = create_notifications(db, channel, 1, kind="escalated")
    assert make_dispatcher(db, clock).dispatch_once() == 1
    (row,) = rows(db, [nid])
    assert row.status == "sent"
    (envelope,) = sink.envelopes
    assert envelope.rcpt_tos == ["duban@example.gov.cn", "leader@example.gov.cn"]
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert mail["Subject"].startswith("【升级督办】第1号事项")  # no reason given
    assert mail["Message-ID"] == f"<{row.delivery_id}@duban>"
    assert "http://127.0.0.1:8000/blockers/1" in mail.get_content()


def test_refused_recipient_is_dead(db, clock, sink, smtp_port):
    channel = create_channel(db, "email", f"smtp://127.0.0.1:{smtp_port}/nobody@example.gov.cn")
    (nid,) = create_notifications(db, channel, 1)
    make_dispatcher(db, clock).dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "dead" and "refused" in row.last_error


def test_mail_server_down_is_retried(db, clock):
    channel = create_channel(db, "email", f"smtp://127.0.0.1:{free_port()}/duban@example.gov.cn")
    (nid,) = create_notifications(db, channel, 1)
    make_dispatcher(db, clock).dispatch_once()
    (row,) = rows(db, [nid])
    assert row.status == "failed" and "SMTP connection failed" in row.last_error


def test_mail_host_must_be_allowed(db, clock):
    channel = create_channel(db, "email", "smtp://mail.internal/duban@example.gov.cn")
    (nid,) = create_notifications(db, channel, 1)
    make_dispatcher(db, clock).dispatch_once()
    assert rows(db, [nid])[0].status == "dead"
