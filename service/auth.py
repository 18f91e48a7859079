"""Bearer API keys: who is calling, with which scopes, over which part of the unit tree."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session, select

from service.models import ApiKey, Unit
from service.models.types import utcnow
from service.problems import Problem

KEY_PREFIX = "dbn_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them safely.
    return hashlib.sha256(key.encode()).hexdigest()


# How an API key is named where it acted (events, escalation entries): `key:<id>`.
KEY_ACTOR = "key:"


def key_id_of(actor: str | None) -> int | None:
    """The id of the API key named by an actor recorded as `Principal.actor`, else None."""
    if actor is None or not actor.startswith(KEY_ACTOR):
        return None
    rest = actor.removeprefix(KEY_ACTOR)
    return int(rest) if rest.isdigit() else None


@dataclass(frozen=True)
class Principal:
    """The caller: the bootstrap admin, or an API key bound to a unit."""

    name: str
    scopes: frozenset[str]
    is_admin: bool = False
    key_id: int | None = None
    unit_id: int | None = None
    unit_code: str | None = None
    unit_path: str | None = None
    unit_kind: str | None = None
    unit_level: str | None = None
    unit_tags: tuple[str, ...] = field(default_factory=tuple)
    officer_id: int | None = None
    # The subtree this key sees: its own unit's, or the city's for a city taskforce.
    scope_path: str | None = None

    @property
    def actor(self) -> str:
        return "admin" if self.key_id is None else f"{KEY_ACTOR}{self.key_id}"

    @property
    def source(self) -> str:
        return self.actor

    def has(self, scope: str) -> bool:
        return self.is_admin or "admin" in self.scopes or scope in self.scopes

    def sees_path(self, path: str | None) -> bool:
        """Whether `path` is in this key's jurisdiction. Only the bootstrap admin sees every
        unit's; every other key, the `admin` scope included, sees and acts within its own
        unit's jurisdiction, as api.md says."""
        if self.is_admin:
            return True
        return bool(path and self.scope_path and path.startswith(self.scope_path))

    def administers(self, path: str | None) -> bool:
        """Whether this key may change the unit at `path` and what hangs on it (sub-units,
        officers, API keys, channels): the bootstrap admin anywhere, a key with the `admin`
        scope its own unit and the units under it. A county's key never mints a key for
        another county or for the city; a taskforce's key, which sees the whole city's
        blockers, administers its own unit only."""
        if self.is_admin:
            return True
        own = self.unit_path
        return "admin" in self.scopes and bool(path and own and path.startswith(own))

    @property
    def administers_everything(self) -> bool:
        """Whether this key may change what holds for the whole tree (the holiday calendar,
        the simulation clock, the ladder's tags): the bootstrap admin, or a key with the
        `admin` scope of a root unit (the city itself)."""
        root = bool(self.unit_path) and (self.unit_path or "").count("/") == 2
        return self.is_admin or ("admin" in self.scopes and root)

    @property
    def is_taskforce(self) -> bool:
        return self.unit_kind == "taskforce" and self.unit_level in ("city", "province")


def require_scope(principal: Principal, scope: str) -> None:
    if not principal.has(scope):
        raise Problem(403, f"This API key lacks the '{scope}' scope needed for this request.")


def require_administers(principal: Principal, unit: Unit) -> None:
    """403 unless this key administers `unit` (see `Principal.administers`)."""
    require_scope(principal, "admin")
    if not principal.administers(unit.path):
        raise Problem(
            403,
            f"Unit '{unit.code}' is outside this key's jurisdiction: a key administers its "
            "own unit and the units under it.",
        )


def require_administers_everything(principal: Principal) -> None:
    require_scope(principal, "admin")
    if not principal.administers_everything:
        raise Problem(
            403,
            "This applies to every unit: it takes the bootstrap admin key or a key with the "
            "'admin' scope for the whole tree (its root unit).",
        )


def _scope_path(session: Session, unit: Unit) -> str:
    """A city-level taskforce oversees the whole city it belongs to. A leader office (a
    deputy mayor's) sees its own subtree and what is escalated to it, as api.md says."""
    if unit.kind == "taskforce" and unit.level in ("city", "province") and unit.parent_id:
        parent = session.get(Unit, unit.parent_id)
        if parent is not None and parent.kind == "government":
            return parent.path
    return unit.path


def bearer_token(authorization: str | None) -> str:
    """The key in 'Authorization: Bearer <key>', or 401."""
    if not authorization:
        raise Problem(
            401,
            "Send an API key as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Problem(
            401,
            "The Authorization header must be 'Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


def admin_principal(token: str, admin_key: str | None) -> Principal | None:
    if admin_key and hmac.compare_digest(token.encode(), admin_key.encode()):
        return Principal(name="admin", scopes=frozenset({"read", "write", "admin"}), is_admin=True)
    return None


def principal_for_key(session: Session, token: str) -> Principal:
    """The principal of a stored, unrevoked key, read from the database; else 401. A
    rotated key's old secret still counts until its `previous_until` (real time)."""
    digest = hash_key(token)
    key = session.exec(select(ApiKey).where(ApiKey.key_hash == digest)).first()
    if key is None:
        key = session.exec(
            select(ApiKey).where(ApiKey.previous_hash == digest, ApiKey.previous_until > utcnow())
        ).first()
    if key is None or key.revoked_at is not None:
        raise Problem(
            401, "This API key is unknown or revoked.", headers={"WWW-Authenticate": "Bearer"}
        )
    unit = session.get(Unit, key.unit_id)
    assert unit is not None  # FK guarantees it
    return Principal(
        name=key.name,
        scopes=frozenset(key.scopes),
        key_id=key.id,
        unit_id=unit.id,
        unit_code=unit.code,
        unit_path=unit.path,
        unit_kind=unit.kind,
        unit_level=unit.level,
        unit_tags=tuple(unit.tags),
        officer_id=key.officer_id,
        scope_path=_scope_path(session, unit),
    )


class PrincipalCache:
    """Key → principal for `ttl_s` seconds, so a request needs no read transaction to
    learn who is calling.

    The bound: a key revoked (or a unit moved) in the database is still honoured by a
    process that cached it for at most `ttl_s` seconds; `forget_all()` ends that at
    once in this process. Unknown keys are never cached, so a new key works at once and
    guessing fills no memory. A lookup that raced a `forget_all()` is not stored.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(hash_key(token))
        if entry is None or entry[1] <= self.clock():
            return None
        return entry[0]

    def generation(self) -> int:
        return self._generation

    def put(self, token: str, principal: Principal, generation: int) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return  # forgotten while it was being read: it may be stale
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[hash_key(token)] = (principal, self.clock() + self.ttl_s)

    def forget_all(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
