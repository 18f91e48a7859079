"""The channel kinds the dispatcher knows, spelled out: channel.kind -> notifier."""

from __future__ import annotations

from collections.abc import Mapping

from notifiers.base import DirectNotifier, Notifier
from notifiers.dingtalk import DingTalkNotifier
from notifiers.email import EmailNotifier
from notifiers.feishu import FeishuNotifier
from notifiers.webhook import WebhookNotifier
from notifiers.wecom import WeComNotifier

AnyNotifier = Notifier | DirectNotifier

NOTIFIERS: Mapping[str, AnyNotifier] = {
    "wecom": WeComNotifier(),
    "dingtalk": DingTalkNotifier(),
    "feishu": FeishuNotifier(),
    "webhook": WebhookNotifier(),
    "email": EmailNotifier(),
}


def notifier_for(kind: str, registry: Mapping[str, AnyNotifier] = NOTIFIERS) -> AnyNotifier:
    try:
        return registry[kind]
    except KeyError:
        raise LookupError(f"no notifier for channel kind {kind!r}") from None
