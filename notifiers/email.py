"""E-mail over SMTP with the standard library.

Channel URL format::

    smtp://host[:port]/rcpt@example.gov.cn[,rcpt2@example.gov.cn][?from=…&starttls=1&user=…]
    smtps://host[:port]/rcpt@example.gov.cn            (implicit TLS, default port 465)

* recipients: the path, comma-separated (percent-encoding allowed);
* ``from``: sender address, default ``duban@<host>``;
* ``starttls=1``: upgrade a plain ``smtp://`` connection with STARTTLS;
* ``user``: log in as this user with ``channel.secret`` as the password. Credentials
  never go in the URL's userinfo (the allow-list rejects URLs that have one).

Subject and body are UTF-8 (the plain-text rendering; the link is in the body). The
delivery id becomes the Message-ID so a mail system can spot a retried duplicate.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlsplit

from notifiers.base import ChannelPolicy, Message, Outcome
from service.models import Channel

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    sender: str
    recipients: tuple[str, ...]
    user: str | None


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"not an smtp:// or smtps:// URL: {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("SMTP URL has no host")
    recipients = tuple(r.strip() for r in unquote(parts.path.lstrip("/")).split(",") if r.strip())
    if not recipients or any("@" not in r for r in recipients):
        raise ValueError(
            "SMTP URL path must list recipient addresses: smtp://host/rcpt@example.gov.cn"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    implicit_tls = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        starttls=query.get("starttls", "0").lower() in ("1", "true", "yes"),
        sender=query.get("from") or f"duban@{parts.hostname}",
        recipients=recipients,
        user=query.get("user") or None,
    )


def compose(target: SmtpTarget, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = target.sender
    mail["To"] = ", ".join(target.recipients)
    mail["Date"] = formatdate(localtime=False)
    if message.delivery_id:
        mail["Message-ID"] = f"<{message.delivery_id}@duban>"
    body = message.text
    if message.link and message.link not in body:
        body = f"{body}\n\n{message.link}"
    mail.set_content(body, charset="utf-8")
    return mail


@dataclass(frozen=True)
class EmailNotifier:
    kind: str = "email"
    policy: ChannelPolicy = field(default_factory=ChannelPolicy)
    timeout_s: float = TIMEOUT_S

    def fits(self, message: Message) -> bool:
        return True

    def deliver(self, channel: Channel, message: Message) -> Outcome:
        try:
            target = parse_smtp_url(channel.url)
        except ValueError as exc:
            return Outcome.permanent(f"bad SMTP channel URL: {exc}")
        mail = compose(target, message)
        client_cls = smtplib.SMTP_SSL if target.implicit_tls else smtplib.SMTP
        try:
            with client_cls(target.host, target.port, timeout=self.timeout_s) as smtp:
                if target.starttls and not target.implicit_tls:
                    smtp.starttls(context=ssl.create_default_context())
                if target.user:
                    smtp.login(target.user, channel.secret or "")
                refused = smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            return Outcome.permanent(f"SMTP refused every recipient: {exc.recipients}")
        except smtplib.SMTPAuthenticationError as exc:
            return Outcome.permanent(f"SMTP login failed: {exc.smtp_code}")
        except smtplib.SMTPResponseException as exc:
            reason = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:300]
            return (
                Outcome.retry(reason) if 400 <= exc.smtp_code < 500 else Outcome.permanent(reason)
            )
        except (smtplib.SMTPException, OSError) as exc:
            return Outcome.retry(f"SMTP connection failed: {type(exc).__name__}: {exc}")
        if refused:
            return Outcome.success(f"accepted, but refused: {sorted(refused)}")
        return Outcome.success(f"accepted for {len(target.recipients)} recipient(s)")
