"""Runtime configuration: one pydantic-settings class, every variable prefixed DUBAN_."""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from workflows.calendar import CALENDAR_YEARS, OUTSIDE_CALENDAR

DEFAULT_SQLITE_URL = "sqlite:///./var/duban.db"
OFFICE_HOURS = re.compile(
    r"^(?P<open>(?P<oh>\d\d):(?P<om>\d\d))-(?P<close>(?P<ch>\d\d):(?P<cm>\d\d))$"
)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
PLATFORM_HOSTS = "qyapi.weixin.qq.com,oapi.dingtalk.com,open.feishu.cn,open.larksuite.com"


def check_database_url(value: str) -> str:
    """`value`, if it is a URL of a database duban runs on; else ValueError saying why."""
    try:
        backend = make_url(value).get_backend_name()
    except Exception as exc:  # SQLAlchemy's ArgumentError, or a bad port
        raise ValueError(
            f"{value!r} is not a database URL; use sqlite:///./var/duban.db or "
            "postgresql+psycopg://user:password@host:5432/duban"
        ) from exc
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"duban runs on SQLite or PostgreSQL, not {backend!r}")
    return value


class UnsafeSettings(ValueError):
    """Raised when a production-looking configuration lacks something it must have."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DUBAN_", env_file=None, extra="ignore")

    database_url: str = Field(
        DEFAULT_SQLITE_URL,
        description="SQLAlchemy URL; SQLite under ./var by default, postgresql+psycopg://… in production",
    )
    admin_key: str | None = Field(None, description="Bootstrap admin API key (Bearer)")
    timezone: str = Field("Asia/Shanghai", description="Business time zone")
    clock: str = Field("system", description="'system' or 'manual' (simulation clock)")
    clock_start: str | None = Field(
        None, description="Manual clock: RFC 3339 start instant (default: the real time at start)"
    )
    sweep_interval_s: float = Field(1.0, gt=0, description="Timer sweep period, seconds")
    sweep_batch: int = Field(500, gt=0, description="Timers claimed per sweep batch")
    scheduler: bool = Field(True, description="Run the timer sweep in the serve process")
    dispatcher: bool = Field(
        True, description="Run the notification dispatcher in the serve process"
    )
    workflow: str = Field("blocker", description="Default workflow definition for new blockers")
    channel_allowed_hosts: str = Field(
        PLATFORM_HOSTS, description="Comma-separated hosts that channel and webhook URLs may use"
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL for links in messages to officers"
    )
    office_hours: str = Field("08:30-18:00", description="Local office hours on working days")
    max_body_bytes: int = Field(1_048_576, gt=0, description="Request body size limit")
    # 1,000 a second (bursts of 10,000): a runaway client is stopped, while a busy system or
    # a test driving one key as fast as it can (thousands of actions) is not.
    rate_limit_per_minute: int = Field(60000, gt=0, description="Requests per minute per API key")
    log_level: str = Field("info")
    auth_cache_s: float = Field(
        5.0,
        ge=0,
        description="Seconds a process trusts a key it has looked up; a key revoked in the "
        "database stops working within this time (0: look every request up)",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="HTTP worker processes of `duban serve`; with more than one, the timer "
        "sweep and the dispatcher run once, in the supervising process",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return check_database_url(value)

    @field_validator("clock_start")
    @classmethod
    def _clock_start(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            instant = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not an RFC 3339 instant like 2026-03-02T09:00:00+08:00"
            ) from exc
        if instant.tzinfo is None:
            raise ValueError(f"{value!r} needs an offset, like 2026-03-02T09:00:00+08:00")
        if not CALENDAR_YEARS[0] < instant.year < CALENDAR_YEARS[1]:
            raise ValueError(f"{value!r}: {OUTSIDE_CALENDAR}")
        return value

    @field_validator("office_hours")
    @classmethod
    def _office_hours(cls, value: str) -> str:
        match = OFFICE_HOURS.match(value.strip())
        if match is None or not (
            int(match["oh"]) < 24
            and int(match["ch"]) < 24
            and int(match["om"]) < 60
            and int(match["cm"]) < 60
            and match["open"] < match["close"]
        ):
            raise ValueError(
                f"{value!r} is not an opening and a closing time on one day, like 08:30-18:00"
            )
        return value.strip()

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not a web address like https://duban.example.gov.cn")
        return value

    @field_validator("channel_allowed_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        for host in (h.strip() for h in value.split(",") if h.strip()):
            ipv6 = host.strip("[]").count(":") > 1
            if any(c in host for c in "/@?#*") or (":" in host and not ipv6):
                raise ValueError(
                    f"{host!r} is not a bare host name or address (no scheme, port or path)"
                )
        return value

    @field_validator("clock")
    @classmethod
    def _known_clock(cls, value: str) -> str:
        if value not in ("system", "manual"):
            raise ValueError("DUBAN_CLOCK must be 'system' or 'manual'")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.serves_api and self.is_production_like and not self.admin_key:
            raise UnsafeSettings(
                "DUBAN_ADMIN_KEY is not set, and DUBAN_DATABASE_URL points at a production "
                f"database ({self.redacted_database_url}). Set DUBAN_ADMIN_KEY to a long random "
                "secret (for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')."
            )
        if self.workers > 1 and self.clock == "manual":
            raise UnsafeSettings(
                "DUBAN_WORKERS must be 1 with DUBAN_CLOCK=manual: the simulated clock lives "
                "in one process"
            )
        if self.admin_key is not None and len(self.admin_key) < 8:
            raise UnsafeSettings("DUBAN_ADMIN_KEY must be at least 8 characters long")
        return self

    @property
    def serves_api(self) -> bool:
        """Whether these settings start the API, which needs its bootstrap admin key."""
        return True

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_production_like(self) -> bool:
        """Anything but a SQLite file under ./var (or in memory) counts as production."""
        if not self.is_sqlite:
            return True
        path = self.database_url.split(":///", 1)[-1]
        if path in ("", ":memory:"):
            return False
        resolved = Path(path).resolve()
        return Path("var").resolve() not in resolved.parents

    @property
    def redacted_database_url(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset(
            h.strip().lower() for h in self.channel_allowed_hosts.split(",") if h.strip()
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class BackgroundSettings(Settings):
    """For the commands that serve no API (`duban sweep`, `dispatch`, `audit verify`): the
    admin key, which only authenticates API callers, is not needed to run them."""

    @property
    def serves_api(self) -> bool:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
