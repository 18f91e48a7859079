"""Channel URLs may only point at allowed hosts; internal addresses are refused."""

from __future__ import annotations

import pytest

from notifiers.allowlist import check_url
from tests.notifiers.helpers import (
    attempts,
    create_channel,
    create_notifications,
    make_dispatcher,
    rows,
)

PLATFORMS = frozenset({"qyapi.weixin.qq.com", "oapi.dingtalk.com", "open.feishu.cn", "127.0.0.1"})


@pytest.mark.parametrize(
    "url",
    [
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc",
        "https://QYAPI.weixin.qq.com/cgi-bin/webhook/send?key=abc",
        "https://oapi.dingtalk.com:443/robot/send?access_token=t",
        "http://127.0.0.1:8080/hook",
        "smtp://127.0.0.1:2525/duban@example.gov.cn",
    ],
)
def test_allowed(url):
    check_url(url, PLATFORMS)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://qyapi.weixin.qq.com/cgi-bin/webhook/send", "plain http"),
        ("ftp://qyapi.weixin.qq.com/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://10.0.0.5/admin", "not in the allowed hosts"),
        ("https://169.254.169.254/latest/meta-data/", "not in the allowed hosts"),
        ("https://localhost/", "not in the allowed hosts"),
        ("https://127.1/", "not in the allowed hosts"),
        ("https://2130706433/", "not in the allowed hosts"),
        ("https://[::1]/", "not in the allowed hosts"),
        ("https://qyapi.weixin.qq.com.evil.example/x", "not in the allowed hosts"),
        ("https://evil.example/qyapi.weixin.qq.com", "not in the allowed hosts"),
        ("https://qyapi.weixin.qq.com@10.0.0.5/x", "userinfo"),
        ("https://user:pw@qyapi.weixin.qq.com/x", "userinfo"),
        ("https://qyapi.weixin.qq.com\\@10.0.0.5/", "backslash"),
        ("https://qyapi.weixin.qq.com:99999/x", "port"),
        ("https://qyapi.weixin.qq.com /x", "whitespace"),
        ("smtp://mail.internal:25/a@b.cn", "not in the allowed hosts"),
        ("", "empty"),
    ],
)
def test_refused(url, why):
    with pytest.raises(ValueError, match=why):
        check_url(url, PLATFORMS)


def test_ip_literals_only_when_listed():
    check_url("https://[::1]:8443/x", frozenset({"::1"}))
    check_url("https://[0:0::1]/x", frozenset({"[::1]"}))
    with pytest.raises(ValueError):
        check_url("https://127.0.0.2/x", frozenset({"127.0.0.1"}))


def test_dispatcher_refuses_internal_hosts_before_sending(db, clock, receiver):
    # The receiver listens on 127.0.0.1, but the channel names it "localhost",
    # which the allow-list does not contain: nothing may be sent.
    url = receiver.url.replace("127.0.0.1", "localhost")
    channel = create_channel(db, "webhook", url, secret="hook-secret")
    internal = create_channel(db, "wecom", "https://10.1.2.3/cgi-bin/webhook/send?key=k")
    ids = create_notifications(db, channel, 2, kind="webhook") + create_notifications(
        db, internal, 1
    )
    dispatcher = make_dispatcher(db, clock)
    assert dispatcher.dispatch_once() == 3
    assert receiver.hits == 0
    for row in rows(db, ids):
        assert row.status == "dead"
        assert "not in the allowed hosts" in row.last_error
        (attempt,) = attempts(db, row.id)
        assert not attempt.ok and "not in the allowed hosts" in attempt.error
