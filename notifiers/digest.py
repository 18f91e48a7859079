"""Fit a burst of messages for one chat group into the messages its robot may still take.

When more rows are due for a robot than its rate limit allows in the current window, the
rows are merged into digests — one message listing several blockers, @-ing every officer
of every merged row. Each digest is as full as the platform's size limit (and
:data:`MAX_DIGEST_ITEMS`) allows; rows that do not fit in the allowance stay queued.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from notifiers.base import DirectNotifier, Message, Notifier

MAX_DIGEST_ITEMS = 20  # a longer list is not read to the end in a chat group

Row = TypeVar("Row")


@dataclass
class Planned(Generic[Row]):
    message: Message
    rows: list[Row]

    @property
    def is_digest(self) -> bool:
        return len(self.rows) > 1


def plan(
    notifier: Notifier | DirectNotifier,
    singles: Sequence[tuple[Row, Message]],
    allowance: int | None,
    merge: Callable[[Sequence[Row]], Message],
    due: int | None = None,
    alone: Callable[[Row], bool] = lambda row: False,
) -> list[Planned[Row]]:
    """Choose the messages to send now.

    ``singles``: each row with its own rendering, oldest first. ``allowance``: messages the
    channel may still take (``None``: unlimited). ``merge`` renders a digest of rows.
    ``due``: all rows due for the channel, when ``singles`` is only a batch of them — the
    backlog, not the batch, decides whether to digest. ``alone``: rows that are never merged
    (a daily digest or a briefing is a list already): each goes as its own message.
    """
    backlog = max(len(singles), due or 0)
    if allowance is None or backlog <= allowance or not notifier.policy.digest:
        chosen = singles if allowance is None else singles[: max(0, allowance)]
        return [Planned(message, [row]) for row, message in chosen]
    groups: list[Planned[Row]] = []
    current: list[tuple[Row, Message]] = []
    current_message: Message | None = None
    for entry in singles:
        if alone(entry[0]):
            if current:
                groups.append(_close(current, current_message))
                current, current_message = [], None
            groups.append(Planned(entry[1], [entry[0]]))
            if len(groups) == allowance:
                return groups
            continue
        candidate = [*current, entry]
        message = merge([row for row, _ in candidate])
        if current and (len(candidate) > MAX_DIGEST_ITEMS or not notifier.fits(message)):
            groups.append(_close(current, current_message))
            if len(groups) == allowance:
                return groups
            current, current_message = [entry], merge([entry[0]])
        else:
            current, current_message = candidate, message
    if current:
        groups.append(_close(current, current_message))
    return groups[:allowance]


def _close(entries: list[tuple[Row, Message]], merged: Message | None) -> Planned[Row]:
    if len(entries) == 1:  # a digest of one is just the message itself
        row, message = entries[0]
        return Planned(message, [row])
    assert merged is not None
    return Planned(merged, [row for row, _ in entries])
