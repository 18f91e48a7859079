"""SQLModel tables, one small module each. This leaf layer imports nothing else of ours."""

from service.models.api_key import ApiKey
from service.models.blocker import Blocker
from service.models.calendar_year import CalendarYear
from service.models.channel import Channel
from service.models.clock_state import ClockState
from service.models.escalation import Escalation
from service.models.event import Event
from service.models.idempotency_key import IdempotencyKey
from service.models.notification import Notification
from service.models.notification_attempt import NotificationAttempt
from service.models.officer import Officer
from service.models.project import Project
from service.models.timer import Timer
from service.models.unit import Unit
from service.models.webhook import WebhookSubscription

__all__ = [
    "ApiKey",
    "Blocker",
    "CalendarYear",
    "Channel",
    "ClockState",
    "Escalation",
    "Event",
    "IdempotencyKey",
    "Notification",
    "NotificationAttempt",
    "Officer",
    "Project",
    "Timer",
    "Unit",
    "WebhookSubscription",
]
