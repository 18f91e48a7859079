"""Every command in README.md and docs/*.md runs, so the docs cannot drift from the code.

Each ```sh block is split into commands (continuation lines joined, comments dropped) and
the commands of one document run in order, in one shell state (exported variables carry
over), against a fresh server: `tests.live.live_server` on a freshly migrated SQLite copy,
whose URL and admin key replace the README's `http://127.0.0.1:8000` and
`dev-admin-key-change-me`.

- `curl` runs through a shell function that records each call's exit code, HTTP status and
  body. Every call must exit 0 and answer 2xx JSON, or the status that a trailing
  `# expect NNN` comment names (then with a problem+json body carrying that status).
- Other commands (`duban …`, `sqlite3 …`, `export …`) must exit 0. They run in a temp
  directory holding `var/duban.db` (the database the server uses), and links to the
  project's `.venv` and `workflows`, with DUBAN_DATABASE_URL and DUBAN_ADMIN_KEY set.
- `duban serve|demo|sweep|dispatch` without `--once` run until stopped: they are started
  (servers on a free loopback port), probed (/healthz answers, and /readyz for serve; or the
  worker is still running after a few seconds), then stopped.
- Commands that cannot run here are in ALLOW_LIST with the reason; each entry must still
  appear in the docs, so the list cannot rot.

The Python and Java webhook-verification examples in docs/integration.md run against a body
signed by notifiers/webhook.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from notifiers.base import Message
from notifiers.webhook import WebhookNotifier
from service.models import Channel
from service.settings import PLATFORM_HOSTS
from tests.helpers import ADMIN_KEY
from tests.live import free_port, live_server

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INTEGRATION = ROOT / "docs" / "integration.md"
README_BASE = "http://127.0.0.1:8000"
README_ADMIN_KEY = "dev-admin-key-change-me"
# docs/integration.md has the operator add the subscriber's host to the allowed hosts.
WEBHOOK_HOST = "gtzz.example.gov.cn"

# Commands shown in the docs that this test does not run, and why.
ALLOW_LIST: dict[str, str] = {
    # Installs, migrates ./var/duban.db in the checkout and serves on port 8000 until
    # stopped; the `duban serve` it runs is started and probed where the docs show it.
    "make run": "serves forever on the developer's port 8000",
    # The whole suite, this test included.
    "make test": "runs this test itself",
    # Builds var/demo.db and runs the simulated city on port 8000 until stopped.
    "make demo": "serves forever on the developer's port 8000",
    # A production PostgreSQL host; the test's own database URL stands in for it.
    "export DUBAN_DATABASE_URL=postgresql+psycopg://duban:secret@db.internal:5432/duban": (
        "points at a production host"
    ),
    # Backups and restores of the production PostgreSQL (docs/operations.md).
    "pg_dump --format=custom --file=duban-$(date +%F).dump "
    "postgresql://duban@db.internal:5432/duban": "dumps a production host",
    "pg_restore --no-owner --dbname=postgresql://duban@db.internal:5432/duban_restored "
    "duban-2026-03-09.dump": "restores into a production host",
}

LONG_RUNNING = re.compile(r"\bduban\s+(serve|demo|sweep|dispatch)\b")
SERVERS = ("serve", "demo")
EXPECT = re.compile(r"^expect\s+(\d{3})\b")
FENCE = re.compile(r"^```([\w+-]*)\s*$")
# Answers that are not JSON, and what each must hold.
NOT_JSON = {"/metrics": b"duban_http_requests_total", "/reports/units/export": "排名".encode()}

PRELUDE = r"""
set -o pipefail
curl() {
  local body status rc url arg
  body=$(mktemp "$DOCS_TMP/curl-body.XXXXXX")
  for arg in "$@"; do case $arg in http://*|https://*) url=$arg ;; esac; done
  status=$(command curl --silent --show-error --output "$body" --write-out '%{http_code}' "$@")
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$rc" "$status" "$body" "$url" >> "$DOCS_CURL_LOG"
  cat "$body"
  return $rc
}
"""


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str
    expect: int | None = None

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}: {self.text[:160]}"


def fenced_blocks(path: Path, lang: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of every ```lang block in the file."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    fence_lang, start = "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if current is None:
            match = FENCE.match(line.strip())
            if match:
                fence_lang, current, start = match.group(1), [], number + 1
        elif line.strip() == "```":
            if fence_lang == lang:
                blocks.append((start, current))
            current = None
        else:
            current.append(line)
    return blocks


def split_comment(line: str) -> tuple[str, str]:
    """The code and the trailing comment of one shell line (a '#' outside quotes)."""
    quote, i = "", 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and quote != "'":
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
        i += 1
    return line.rstrip(), ""


def doc_commands(path: Path) -> list[Command]:
    commands: list[Command] = []
    for start, lines in fenced_blocks(path, "sh"):
        parts: list[str] = []
        first = start
        for offset, raw in enumerate(lines):
            code, comment = split_comment(raw)
            if not parts and not code.strip():
                continue
            if not parts:
                first = start + offset
            if code.endswith("\\"):
                parts.append(code[:-1].strip())
                continue
            parts.append(code.strip())
            match = EXPECT.match(comment)
            commands.append(
                Command(
                    doc=path.name,
                    line=first,
                    text=" ".join(p for p in parts if p),
                    expect=int(match.group(1)) if match else None,
                )
            )
            parts = []
        assert not parts, f"{path.name}:{first}: a command ends with a line continuation"
    return commands


def strip_headers(body: bytes) -> bytes:
    """`curl -i` puts the response head before the body."""
    while body.startswith(b"HTTP/"):
        _, sep, rest = body.partition(b"\r\n\r\n")
        if not sep:
            break
        body = rest
    return body


class Shell:
    """Runs one document's commands in order, keeping exported variables between them."""

    def __init__(self, workdir: Path, base: str) -> None:
        self.workdir = workdir
        self.base = base
        self.prelude = workdir / ".docs-prelude.sh"
        self.prelude.write_text(PRELUDE)
        self.state = workdir / ".docs-state.sh"
        self.state.write_text("")
        self.curl_log = workdir / ".docs-curl.log"
        self.curl_log.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
        env.update(
            PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            DUBAN_DATABASE_URL="sqlite:///./var/duban.db",
            DUBAN_ADMIN_KEY=ADMIN_KEY,
            DOCS_TMP=str(workdir),
            DOCS_CURL_LOG=str(self.curl_log),
        )
        self.env = env

    def substitute(self, text: str) -> str:
        return text.replace(README_BASE, self.base).replace(README_ADMIN_KEY, ADMIN_KEY)

    def script(self, text: str) -> str:
        state = shlex.quote(str(self.state))
        return (
            f"source {shlex.quote(str(self.prelude))}\nsource {state}\n{text}\n"
            f"__docs_rc=$?\nexport -p > {state}\nexit $__docs_rc\n"
        )

    def run(self, command: Command) -> None:
        text = self.substitute(command.text)
        if "curl " in text:
            assert not re.search(r"\s(-o|-w|-I|--output|--write-out|--head)\b", text), (
                f"{command.where}: the docs' curl commands must print the body "
                "(no -o, -w or -I), so the test can check it"
            )
        logged = len(self.curl_log.read_text().splitlines())
        done = subprocess.run(
            ["bash", "-c", self.script(text)],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        output = f"\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        assert done.returncode == 0, f"{command.where}: exit {done.returncode}{output}"
        calls = self.curl_log.read_text().splitlines()[logged:]
        if "curl " in text:
            assert calls, f"{command.where}: no curl call was recorded{output}"
        for call in calls:
            self.check_call(command, call, output)

    def check_call(self, command: Command, call: str, output: str) -> None:
        rc, status, body_path, url = (call.split("\t") + [""] * 4)[:4]
        body = strip_headers(Path(body_path).read_bytes())
        where = f"{command.where}\n  (curl {url}: exit {rc}, HTTP {status}){output}"
        assert rc == "0", where
        if command.expect is not None:
            assert int(status) == command.expect, where
        else:
            assert 200 <= int(status) < 300, where
        if int(status) >= 400:
            problem = json.loads(body)
            assert problem["status"] == int(status) and problem["title"], where
        elif (path := url.split("?")[0]).endswith(tuple(NOT_JSON)):
            assert next(v for k, v in NOT_JSON.items() if path.endswith(k)) in body, where
        else:
            json.loads(body)

    def run_until_stopped(self, command: Command) -> None:
        """Start a serve/sweep/dispatch command, check it comes up, stop it."""
        text = self.substitute(command.text)
        port = free_port()
        kind = LONG_RUNNING.search(text).group(1)
        serve = kind in SERVERS
        if serve:
            text = re.sub(r"--host\s+\S+", "--host 127.0.0.1", text)
            if re.search(r"--port\s+\d+", text):
                text = re.sub(r"--port\s+\d+", f"--port {port}", text)
            else:
                text += f" --port {port}"
        log_path = self.workdir / f".docs-daemon-{port}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                ["bash", "-c", self.script(text)],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped below by its id
            )
        try:
            deadline = time.monotonic() + (60 if serve else 4)
            ready = False
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    break
                if serve:
                    try:
                        base = f"http://127.0.0.1:{port}"
                        ready = httpx.get(f"{base}/healthz", timeout=2).status_code == 200
                        if ready and kind == "serve":
                            ready = httpx.get(f"{base}/readyz", timeout=5).status_code == 200
                    except httpx.HTTPError:
                        ready = False
                    if ready:
                        break
                time.sleep(0.2)
            output = log_path.read_text()[-3000:]
            assert process.poll() is None, f"{command.where}: exited early\n{output}"
            assert not serve or ready, f"{command.where}: /healthz or /readyz not up\n{output}"
            assert "Traceback" not in output, f"{command.where}\n{output}"
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


def is_long_running(command: Command) -> bool:
    return bool(LONG_RUNNING.search(command.text)) and "--once" not in command.text


@pytest.fixture
def workdir(tmp_path: Path, sqlite_template: Path) -> Path:
    (tmp_path / "var").mkdir()
    shutil.copy(sqlite_template, tmp_path / "var" / "duban.db")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "workflows").symlink_to(ROOT / "workflows")  # definitions checked by path
    return tmp_path


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.name)
def test_every_command_in_the_doc_runs(doc: Path, workdir: Path):
    missing = [tool for tool in ("curl", "jq", "sqlite3") if shutil.which(tool) is None]
    if missing:
        reason = f"the docs' commands use {', '.join(missing)}, not installed here"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the docs' commands must run)")
        pytest.skip(reason)
    commands = doc_commands(doc)
    with live_server(f"sqlite:///{workdir / 'var' / 'duban.db'}") as (base, app):
        # As docs/integration.md tells the operator: the platforms plus the subscriber.
        app.state.settings.channel_allowed_hosts = f"{PLATFORM_HOSTS},{WEBHOOK_HOST}"
        shell = Shell(workdir, base)
        for command in commands:
            if command.text in ALLOW_LIST:
                continue
            if is_long_running(command):
                shell.run_until_stopped(command)
            else:
                shell.run(command)


def test_allow_listed_commands_still_appear_in_the_docs():
    shown = {c.text for doc in DOC_FILES for c in doc_commands(doc)}
    missing = sorted(set(ALLOW_LIST) - shown)
    assert not missing, f"allow-listed but no longer in any doc (remove them): {missing}"


def test_shell_examples_are_in_sh_blocks():
    """A ```bash or ```console block would escape this test."""
    for doc in DOC_FILES:
        for lang in ("bash", "shell", "console", "zsh", "shell-session"):
            assert not fenced_blocks(doc, lang), f"{doc.name}: use ```sh, not ```{lang}"


def signed_delivery(secret: str) -> tuple[dict[str, str], bytes]:
    """A delivery exactly as the dispatcher sends it (notifiers/webhook.py signs it)."""
    channel = Channel(
        unit_id=1, kind="webhook", url=f"https://{WEBHOOK_HOST}/duban/hook", secret=secret
    )
    message = Message(
        title="blocker.escalated",
        markdown="",
        text="",
        event_type="blocker.escalated",
        delivery_id=uuid.uuid4().hex,
        payload={
            "blocker_id": 7,
            "action": "request_escalation",
            "state": "supervised",
            "escalation_level": 1,
            "version": 5,
            "seq": 5,
            "at": "2026-03-04T02:00:00+00:00",
            "reason": "涉及跨区域协调，需市级层面协调",
        },
    )
    request = WebhookNotifier().build(channel, message)
    return request.headers, request.body


def test_python_webhook_example_verifies_a_signed_delivery():
    blocks = fenced_blocks(INTEGRATION, "python")
    assert len(blocks) == 1, "docs/integration.md should hold one ```python block"
    start, lines = blocks[0]
    namespace: dict = {}
    exec(compile("\n".join(lines), f"{INTEGRATION}:{start}", "exec"), namespace)
    secret = namespace["SECRET"]
    assert f'"secret": "{secret}"' in INTEGRATION.read_text(encoding="utf-8"), (
        "the example's SECRET should be the one the doc subscribes with"
    )
    headers, body = signed_delivery(secret)
    verify = namespace["verify_signature"]
    assert verify(secret, body, headers["X-Duban-Signature"])
    assert not verify(secret, body + b" ", headers["X-Duban-Signature"])
    assert not verify("another-secret-entirely", body, headers["X-Duban-Signature"])
    assert not verify(secret, body, "")

    processed: list[tuple[str, bytes]] = []

    def process(event: str, raw: bytes) -> None:
        processed.append((event, raw))

    receive = namespace["receive"]
    assert receive(headers, body, process) == 200
    assert receive(headers, body, process) == 200  # the retry is deduplicated
    assert processed == [("blocker.escalated", body)]
    forged = {**headers, "X-Duban-Signature": "sha256=" + "0" * 64}
    assert receive(forged, body, process) == 401


def test_java_webhook_example_verifies_a_signed_delivery(tmp_path: Path):
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip("no JDK on this machine to compile the Java example")
    blocks = fenced_blocks(INTEGRATION, "java")
    assert len(blocks) == 1, "docs/integration.md should hold one ```java block"
    source = "\n".join(blocks[0][1])
    name = re.search(r"public\s+final\s+class\s+(\w+)", source).group(1)
    (tmp_path / f"{name}.java").write_text(source, encoding="utf-8")
    # --release 8: the doc promises Java 8 or later.
    subprocess.run(
        ["javac", "--release", "8", "-nowarn", "-d", str(tmp_path), str(tmp_path / f"{name}.java")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    secret = "a-long-random-secret-shared-with-gtzz"
    headers, body = signed_delivery(secret)
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / "tampered.json").write_bytes(body.replace(b'"version":5', b'"version":6'))

    def java(body_file: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                "java",
                "-cp",
                str(tmp_path),
                name,
                secret,
                str(tmp_path / body_file),
                headers["X-Duban-Signature"],
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    good = java("body.json")
    assert (good.returncode, good.stdout.strip()) == (0, "valid"), good.stderr
    bad = java("tampered.json")
    assert (bad.returncode, bad.stdout.strip()) == (1, "invalid"), bad.stderr
