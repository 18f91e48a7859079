"""Where channel URLs may point (DUBAN_CHANNEL_ALLOWED_HOSTS), checked before every send.

A channel URL is configuration typed in by an administrator of some unit; without this
check it is a server-side request forgery vector into the government intranet.

Rules:

* schemes ``https``, ``smtp``, ``smtps``; ``http`` only to a loopback host (tests, demo);
* the host must equal an allowed host exactly (case-insensitive; no suffix or wildcard
  matching, ports are not part of the match);
* IP literals only when that address is listed (``127.1`` or ``2130706433`` are not
  ``127.0.0.1``: they are compared as names and never match an IP entry);
* no userinfo at all (``https://qyapi.weixin.qq.com@evil.example/``), no backslashes,
  whitespace or control characters, a valid port.

DNS is not resolved here: a listed name that resolves to an internal address is the
operator's listing decision.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

SCHEMES = ("https", "http", "smtp", "smtps")
LOOPBACK_NAMES = ("localhost",)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    ip = _ip(host)
    return ip.is_loopback if ip is not None else host in LOOPBACK_NAMES


def _listed(host: str, allowed_hosts: frozenset[str]) -> bool:
    ip = _ip(host)
    for entry in allowed_hosts:
        entry = entry.strip().lower().strip("[]")
        if not entry:
            continue
        if ip is not None:
            if _ip(entry) == ip:
                return True
        elif _ip(entry) is None and entry == host:
            return True
    return False


def check_url(url: str, allowed_hosts: frozenset[str]) -> None:
    """Raise ValueError saying why ``url`` may not be used as a channel URL."""
    if not url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValueError("channel URL is empty or contains whitespace or control characters")
    if "\\" in url:
        raise ValueError("channel URL contains a backslash")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"channel URL scheme {parts.scheme!r} is not allowed: use https, or for e-mail "
            "smtp://host/rcpt@example.gov.cn (smtps:// for implicit TLS)"
        )
    if "@" in parts.netloc:
        raise ValueError("channel URL must not contain userinfo (user@host)")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("channel URL has no host")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise ValueError(f"channel URL has an invalid port: {exc}") from None
    if not _listed(host, allowed_hosts):
        raise ValueError(
            f"channel URL host {host!r} is not in the allowed hosts "
            f"(DUBAN_CHANNEL_ALLOWED_HOSTS: {', '.join(sorted(allowed_hosts)) or 'empty'})"
        )
    if scheme == "http" and not _is_loopback(host):
        raise ValueError(f"plain http is only allowed to loopback hosts, not {host!r}; use https")
