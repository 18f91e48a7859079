"""The send side of the dispatcher: a pool of threads that put claimed messages on the wire.

A :class:`Job` is one platform message (a row, or a digest of rows of one channel) whose
rows are already claimed. :class:`Sender` sends jobs on ``workers`` threads, each with its
own httpx connection pool (one shared pool makes 50 threads queue on its lock and costs
about 1 ms of CPU per request). A message goes straight to the thread's
``httpx.HTTPTransport``: the ``httpx.Client`` layer above it (cookie jar, auth, redirects,
URL merging) does nothing for a bot message and took a fifth of the dispatcher's Python
time. When the environment names a proxy (``HTTPS_PROXY`` and friends, with ``trust_env``),
messages go through a full ``httpx.Client`` instead, which applies it exactly as httpx does.

Per channel the jobs go out one at a time and in order; the channels take turns, so one
busy group does not starve the others. A "too fast" answer from a rate-limited robot drops
that channel's queued jobs (they are reported unsent and the dispatcher gives their rows
back). The sender never touches the database.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import httpx

from notifiers.base import UNCONFIRMED, DirectNotifier, Message, OutboundRequest, Outcome
from notifiers.claims import EXCERPT_MAX
from notifiers.registry import AnyNotifier
from service.models import Channel

log = logging.getLogger(__name__)

USER_AGENT = "duban-notifier"
ANSWER_MAX_BYTES = 65_536  # a platform's answer is a few hundred bytes; keep no more
# After the request went out: the platform may have acted on it. (A kept-alive connection
# that the platform had closed is dropped by the pool before use, so a disconnect here is
# one that happened while the platform had the message.)
UNCONFIRMED_ERRORS = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class Claim:
    notification_id: int
    attempt_id: int


@dataclass
class Job:
    """One platform message: a single row, or a digest of several rows of one channel."""

    channel: Channel
    notifier: AnyNotifier
    message: Message
    claims: list[Claim]
    claimed_at: datetime


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status_code: int | None = None
    excerpt: str = ""


# Called once per submitted job from a sending thread: the result, or None when the job was
# not sent (lease nearly over, the robot said "too fast", the dispatcher is stopping).
Report = Callable[[Job, SendResult | None], None]


class Sender:
    def __init__(
        self,
        *,
        workers: int,
        timeout_s: float,
        may_send: Callable[[Job], bool],
        http: httpx.Client | None = None,
        trust_env: bool = True,
    ) -> None:
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.may_send = may_send
        self._shared_http = http
        self._trust_env = trust_env
        self._local = threading.local()
        self._tls: ssl.SSLContext | None = None  # one for all threads: each costs ~50 ms CPU
        self._timeout = {"timeout": httpx.Timeout(timeout_s).as_dict()}
        # Proxies from the environment: only httpx.Client knows how to apply them. NO_PROXY
        # alone (listed as "no") names no proxy.
        self._proxied = trust_env and any(k != "no" for k in urllib.request.getproxies())
        self._clients: list[httpx.Client | httpx.HTTPTransport] = []
        self._lock = threading.Lock()
        self._queues: dict[int, deque[tuple[Job, Report]]] = {}
        self._ready: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, jobs: Iterable[tuple[Job, Report]]) -> None:
        with self._lock:
            self._start()
            for job, report in jobs:
                channel_id = job.channel.id
                pending = self._queues.get(channel_id)
                if pending is None:  # the channel is neither queued nor being sent to
                    pending = self._queues[channel_id] = deque()
                    self._ready.put(channel_id)
                pending.append((job, report))

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._ready.put(None)
        for thread in threads:
            thread.join()
        for client in self._clients:
            client.close()
        self._clients.clear()

    def _start(self) -> None:
        for n in range(len(self._threads), self.workers):
            thread = threading.Thread(target=self._work, name=f"duban-send-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while (channel_id := self._ready.get()) is not None:
            with self._lock:
                job, report = self._queues[channel_id].popleft()
            try:
                result = self.send(job) if self.may_send(job) else None
            except Exception as exc:  # never lose the report, or the round never ends
                log.exception("sending to channel %s failed", channel_id)
                result = SendResult(Outcome.retry(f"internal error: {exc!r}"))
            dropped: list[tuple[Job, Report]] = []
            with self._lock:
                pending = self._queues[channel_id]
                if result is not None and result.outcome.throttled and job.notifier.policy.limits:
                    dropped = list(pending)  # the robot said "too fast": stop for now
                    pending.clear()
                if pending:
                    self._ready.put(channel_id)  # back of the line: channels take turns
                else:
                    del self._queues[channel_id]
            report(job, result)
            for other, other_report in dropped:
                other_report(other, None)

    # ------------------------------------------------------------------ one message
    def _tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                self._tls = httpx.create_ssl_context(trust_env=self._trust_env)
            return self._tls

    def _post(self, request: OutboundRequest) -> httpx.Response:
        """Send one request on this thread's connections and read the whole answer."""
        if self._shared_http is not None or self._proxied:
            client = self._shared_http or getattr(self._local, "http", None)
            if client is None:
                client = httpx.Client(
                    verify=self._tls_context(),
                    timeout=self.timeout_s,
                    follow_redirects=False,
                    trust_env=self._trust_env,
                )
                self._keep(client)
                self._local.http = client
            outbound = client.build_request(
                request.method,
                request.url,
                headers={"User-Agent": USER_AGENT, **request.headers},
                content=request.body,
                timeout=self.timeout_s,
            )
            return self._bounded(
                client.send(outbound, stream=True, follow_redirects=False), outbound
            )
        transport = getattr(self._local, "transport", None)
        if transport is None:
            transport = httpx.HTTPTransport(verify=self._tls_context(), trust_env=False)
            self._keep(transport)
            self._local.transport = transport
        outbound = httpx.Request(
            request.method,
            request.url,
            headers={"User-Agent": USER_AGENT, **request.headers},
            content=request.body,
            extensions=self._timeout,
        )
        response = transport.handle_request(outbound)  # redirects are never followed
        response.request = outbound
        return self._bounded(response, outbound)

    def _bounded(self, response: httpx.Response, request: httpx.Request) -> httpx.Response:
        """The answer read whole, but within the timeout in all (not per read, which a
        trickling server could stretch past the row's lease) and at most
        ``ANSWER_MAX_BYTES``."""
        deadline = time.monotonic() + self.timeout_s
        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= ANSWER_MAX_BYTES:
                    del body[ANSWER_MAX_BYTES:]
                    break
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(
                        f"the answer took more than {self.timeout_s:g} s", request=request
                    )
        finally:
            response.close()
        encoded = (b"content-encoding", b"content-length", b"transfer-encoding")
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in encoded]
        return httpx.Response(
            response.status_code, headers=headers, content=bytes(body), request=request
        )

    def _keep(self, closable: httpx.Client | httpx.HTTPTransport) -> None:
        with self._lock:
            self._clients.append(closable)

    def send(self, job: Job) -> SendResult:
        notifier = job.notifier
        try:
            if isinstance(notifier, DirectNotifier):
                outcome = notifier.deliver(job.channel, job.message)
                return SendResult(outcome, None, outcome.excerpt)
            request = notifier.build(job.channel, job.message)
        except ValueError as exc:
            return SendResult(Outcome.permanent(f"cannot build the message: {exc}"))
        except Exception as exc:
            log.exception("notifier %s failed", notifier.kind)
            return SendResult(Outcome.retry(f"internal error: {exc!r}"))
        try:
            response = self._post(request)
        except UNCONFIRMED_ERRORS as exc:
            # Sent, but never confirmed (no answer in time, or the connection dropped while
            # waiting for it): it may well have arrived.
            if notifier.policy.at_most_once:
                return SendResult(Outcome.permanent(f"{type(exc).__name__}: {exc}; {UNCONFIRMED}"))
            return SendResult(Outcome.retry(f"{type(exc).__name__}: {exc}"))
        except httpx.HTTPError as exc:
            return SendResult(Outcome.retry(f"{type(exc).__name__}: {exc}"))
        try:
            outcome = notifier.interpret(response)
        except Exception as exc:
            outcome = Outcome.retry(f"cannot read the answer: {exc!r}")
        return SendResult(outcome, response.status_code, response.text[:EXCERPT_MAX])
