"""What a hostile or clumsy client sends over real HTTP: ids the database cannot hold,
racing calls on one escalation entry. A clear 4xx, never a 500, and nothing done twice."""

from __future__ import annotations

import base64
import json
import threading

import httpx
import pytest

from tests.helpers import ADMIN, city, create_blocker, create_project, ok
from tests.live import live_server

TOO_BIG = 2**31  # one past PostgreSQL's `integer`


def _escalated_blocker(c: httpx.Client) -> tuple[int, int]:
    bid = create_blocker(c, "P1")["id"]
    ok(
        c.post(
            f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": {"working_days": 10}}
        )
    )
    ok(c.post(f"/api/v1/blockers/{bid}/acknowledge", json={}))
    ok(c.post(f"/api/v1/blockers/{bid}/request_escalation", json={"reason": "需市级层面协调"}))
    entries = ok(c.get("/api/v1/escalations", params={"status": "open", "limit": 500}))["items"]
    return bid, next(e["id"] for e in entries if e["blocker_id"] == bid)


def _race(base: str, entry: int, kinds: tuple[str, ...]) -> list[tuple[str, int]]:
    """Every call in `kinds` on one escalation entry, released at the same moment."""
    answers: list[tuple[str, int]] = []
    barrier = threading.Barrier(len(kinds))

    def call(kind: str) -> None:
        with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as own:
            barrier.wait()
            r = own.post(f"/api/v1/escalations/{entry}/{kind}", json={"note": kind})
            answers.append((kind, r.status_code))

    threads = [threading.Thread(target=call, args=(kind,)) for kind in kinds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_ids_beyond_the_database_are_refused_not_a_500(db_url):
    with live_server(db_url) as (base, _app), httpx.Client(base_url=base, headers=ADMIN) as c:
        city(c)
        create_project(c, "P1", "wy")
        bid = create_blocker(c, "P1")["id"]
        forged = base64.urlsafe_b64encode(json.dumps({"after": TOO_BIG}).encode()).decode()
        answers = {
            "read a blocker": c.get(f"/api/v1/blockers/{TOO_BIG}"),
            "read an officer": c.get(f"/api/v1/officers/{TOO_BIG}"),
            "act on a blocker": c.post(
                f"/api/v1/blockers/{TOO_BIG}/withdraw", json={"reason": "x"}
            ),
            "handle an escalation": c.post(f"/api/v1/escalations/{TOO_BIG}/handle", json={}),
            "retry a notification": c.post(f"/api/v1/notifications/{TOO_BIG}/retry"),
            "revoke a key": c.post(f"/api/v1/api-keys/{TOO_BIG}/revoke"),
            "filter notifications": c.get("/api/v1/notifications", params={"blocker": TOO_BIG}),
            "events after": c.get("/api/v1/events", params={"after": TOO_BIG}),
            "a forged cursor": c.get("/api/v1/blockers", params={"cursor": forged}),
            "assign an officer": c.post(
                f"/api/v1/blockers/{bid}/assign",
                json={"unit": "wy", "officer_id": TOO_BIG, "deadline": {"working_days": 5}},
            ),
        }
        for what, r in answers.items():
            assert r.status_code == 422, (what, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json"), what
        # The refused assignment changed nothing.
        blocker = ok(c.get(f"/api/v1/blockers/{bid}"))
        assert (blocker["state"], blocker["version"]) == ("collected", 1)


def test_racing_acknowledge_and_handle_on_one_entry_have_one_winner_each(db_url):
    with live_server(db_url) as (base, _app):
        with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as c:
            city(c)
            create_project(c, "P1", "wy")
            targets = [_escalated_blocker(c) for _ in range(4)]

        for bid, entry in targets:
            answers = _race(base, entry, ("acknowledge", "handle") * 5)
            assert {status for _, status in answers} <= {200, 409}, answers
            won = [kind for kind, status in answers if status == 200]
            assert won.count("handle") == 1, answers
            assert won.count("acknowledge") <= 1, answers
            with httpx.Client(base_url=base, headers=ADMIN) as c:
                row = next(
                    e
                    for e in ok(c.get("/api/v1/escalations", params={"limit": 500}))["items"]
                    if e["id"] == entry
                )
                timeline = ok(c.get(f"/api/v1/blockers/{bid}"))["timeline"]
            assert row["status"] == "handled"
            # Every success is one event on the timeline, and nothing else is.
            recorded = [e["action"] for e in timeline if e["action"].startswith("escalation_")]
            assert sorted(recorded) == sorted(f"escalation_{kind}" for kind in won)
            if "acknowledge" in won:
                assert recorded.index("escalation_acknowledge") < recorded.index(
                    "escalation_handle"
                )


@pytest.mark.parametrize("set_to", ["9999-12-31T23:59:59+08:00", "0001-01-01T00:00:00+08:00"])
def test_the_clock_refuses_instants_outside_the_calendar(sqlite_url, set_to):
    with live_server(sqlite_url) as (base, _app), httpx.Client(base_url=base, headers=ADMIN) as c:
        before = ok(c.get("/api/v1/admin/clock"))
        r = c.post("/api/v1/admin/clock", json={"set": set_to})
        assert r.status_code == 422, r.text
        assert "2100" in r.json()["detail"]
        assert ok(c.get("/api/v1/admin/clock")) == before


def test_a_nul_character_is_refused_everywhere_and_changes_nothing(db_url):
    with live_server(db_url) as (base, _app), httpx.Client(base_url=base, headers=ADMIN) as c:
        city(c)
        create_project(c, "P1", "wy")
        bid = create_blocker(c, "P1")["id"]
        before = ok(c.get("/api/v1/blockers", params={"limit": 500}))["items"]
        refused = {
            "title": c.post(
                "/api/v1/blockers", json={"project": "P1", "title": "a\x00b", "category": "用地"}
            ),
            "scopes.0": c.post(
                "/api/v1/api-keys", json={"name": "k", "unit": "wy", "scopes": ["re\x00ad"]}
            ),
            "note": c.post(
                f"/api/v1/blockers/{bid}/withdraw", json={"reason": "x", "note": "\x00"}
            ),
            "q": c.get("/api/v1/blockers", params={"q": "a\x00b"}),
            None: c.get("/api/v1/units/a%00b"),
        }
        deep = (
            '{"project": "P1", "title": "t", "category": "c", "external_ref": '
            + "[" * 900
            + "]" * 900
            + "}"
        )
        refused["external_ref"] = c.post(
            "/api/v1/blockers", content=deep, headers={"Content-Type": "application/json"}
        )
        for field, r in refused.items():
            if field == "external_ref":  # deeply nested, but no NUL: a plain 422, not a crash
                assert r.status_code == 422 and "external_ref" in r.json()["detail"], r.text
                continue
            assert r.status_code == 422, (field, r.status_code, r.text)
            assert "NUL" in r.json()["detail"], r.text
            if field is not None and field != "note":
                assert field in r.json()["detail"], r.text
        assert ok(c.get("/api/v1/blockers", params={"limit": 500}))["items"] == before


def test_a_deadline_date_years_ahead_is_refused(sqlite_url):
    with live_server(sqlite_url) as (base, _app), httpx.Client(base_url=base, headers=ADMIN) as c:
        city(c)
        create_project(c, "P1", "wy")
        bid = create_blocker(c, "P1")["id"]
        r = c.post(
            f"/api/v1/blockers/{bid}/assign",
            json={"unit": "wy", "deadline": {"date": "9999-12-31"}},
        )
        assert r.status_code == 422, r.text
        assert "400 working days" in r.json()["detail"]
        assert ok(c.get(f"/api/v1/blockers/{bid}"))["version"] == 1
        # A year ahead is still a deadline one may give.
        ok(
            c.post(
                f"/api/v1/blockers/{bid}/assign",
                json={"unit": "wy", "deadline": {"date": "2027-03-01"}},
            )
        )


def test_numbers_sent_as_text_or_booleans_are_refused_as_the_schema_says(sqlite_url):
    with live_server(sqlite_url) as (base, _app), httpx.Client(base_url=base, headers=ADMIN) as c:
        city(c)
        create_project(c, "P1", "wy")
        bid = create_blocker(c, "P1")["id"]
        for deadline in ({"working_days": True}, {"working_days": "5"}, {"working_days": 5.5}):
            r = c.post(f"/api/v1/blockers/{bid}/assign", json={"unit": "wy", "deadline": deadline})
            assert r.status_code == 422 and "working_days" in r.json()["detail"], r.text
        r = c.post(
            f"/api/v1/blockers/{bid}/assign",
            json={"unit": "wy", "officer_id": "1", "deadline": {"working_days": 5}},
        )
        assert r.status_code == 422 and "whole number" in r.json()["detail"], r.text
        assert ok(c.get(f"/api/v1/blockers/{bid}"))["version"] == 1
        # 5.0 is the JSON number 5.
        ok(
            c.post(
                f"/api/v1/blockers/{bid}/assign",
                json={"unit": "wy", "deadline": {"working_days": 5.0}},
            )
        )
        ok(c.post(f"/api/v1/blockers/{bid}/acknowledge", json={}))
        r = c.post(f"/api/v1/blockers/{bid}/feedback", json={"note": "进展", "percent": True})
        assert r.status_code == 422 and "percent" in r.json()["detail"], r.text


def test_a_chunked_body_over_the_limit_is_413_and_a_small_one_goes_through(sqlite_url):
    with (
        live_server(sqlite_url, max_body_bytes=2000) as (base, _app),
        httpx.Client(base_url=base, headers=ADMIN) as c,
    ):
        city(c)
        create_project(c, "P1", "wy")

        def chunks(body: bytes):
            for i in range(0, len(body), 500):
                yield body[i : i + 500]

        big = json.dumps({"project": "P1", "title": "大" * 1000, "category": "用地"}).encode()
        r = c.post(
            "/api/v1/blockers",
            content=chunks(big),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["request_id"] == r.headers["x-request-id"]
        small = json.dumps({"project": "P1", "title": "小", "category": "用地"}).encode()
        r = c.post(
            "/api/v1/blockers",
            content=chunks(small),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 201, r.text
        assert len(ok(c.get("/api/v1/blockers"))["items"]) == 1


def test_racing_creations_with_one_external_ref_answer_one_blocker(db_url):
    with live_server(db_url) as (base, _app):
        with httpx.Client(base_url=base, headers=ADMIN) as c:
            city(c)
            create_project(c, "P1", "wy")
        answers: list[httpx.Response] = []
        barrier = threading.Barrier(20)

        def push() -> None:
            with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as own:
                barrier.wait()
                body = {
                    "project": "P1",
                    "title": "12345热线转办",
                    "category": "用地",
                    "external_ref": "12345-0001",
                }
                answers.append(own.post("/api/v1/blockers", json=body))

        threads = [threading.Thread(target=push) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200] * 19 + [201], [r.text for r in answers if r.status_code >= 300]
        assert len({r.json()["id"] for r in answers}) == 1


def test_racing_puts_of_a_new_calendar_year_all_succeed(db_url):
    with live_server(db_url) as (base, _app):
        statuses: list[int] = []
        barrier = threading.Barrier(8)

        def put(i: int) -> None:
            body = {"holidays": [f"2031-10-0{1 + i % 3}"], "workdays": []}
            with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as own:
                barrier.wait()
                statuses.append(own.put("/api/v1/calendar/2031", json=body).status_code)

        threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 8
        with httpx.Client(base_url=base, headers=ADMIN) as c:
            assert len(ok(c.get("/api/v1/calendar/2031"))["holidays"]) >= 1


def test_protocol_manners(sqlite_url):
    with (
        live_server(sqlite_url, rate_limit_per_minute=60) as (base, _app),
        httpx.Client(base_url=base, headers=ADMIN) as c,
    ):
        head = c.head("/healthz")
        assert (head.status_code, head.content) == (200, b"")
        assert c.get("/healthz", params={"probe": "lb"}).status_code == 200
        r = c.delete("/api/v1/blockers")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD, POST"
        r = c.post(
            "/api/v1/projects",
            json={"code": "a/b", "name": "n", "category": "c", "county": "wy"},
        )
        assert r.status_code == 422 and "'/'" in r.json()["detail"], r.text
        r = c.get("/api/v1/blockers", params={"state": "nonsense"})
        assert r.status_code == 422 and "supervised" in r.json()["detail"], r.text
        r = c.post(
            "/api/v1/units",
            content=b"code=xx",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 422 and "application/json" in r.json()["detail"], r.text
        for kind, url in (
            ("email", "smtp://127.0.0.1/not-an-address"),
            ("wecom", "smtp://127.0.0.1/a@b.cn"),
        ):
            r = c.post("/api/v1/channels", json={"unit": "xx", "kind": kind, "url": url})
            assert r.status_code == 422, (kind, r.text)
        spec = c.get("/openapi.json").json()["paths"]["/api/v1/blockers"]["post"]
        assert "Idempotency-Key" in [p["name"] for p in spec["parameters"]]
        assert "413" in spec["responses"] and "content" in spec["responses"]["200"]
        # Over the rate limit: the 429 is a problem like any other, request id included.
        for _ in range(40):
            r = c.get("/healthz")
            if r.status_code == 429:
                break
        assert r.status_code == 429
        problem = r.json()
        assert problem["instance"] == "/healthz"
        assert problem["request_id"] == r.headers["x-request-id"]


def test_codes_that_cannot_be_part_of_a_url_and_json_under_another_name(sqlite_url):
    with live_server(sqlite_url) as (base, _app), httpx.Client(base_url=base, headers=ADMIN) as c:
        for code in ("a?b", "a#b", "a%2Fb", ".."):
            body = {"code": code, "name": "n", "category": "c", "county": "wy"}
            r = c.post("/api/v1/projects", json=body)
            assert r.status_code == 422, (code, r.text)
        r = c.post(
            "/api/v1/units", content=b'{"code": "xx"}', headers={"Content-Type": "text/json"}
        )
        assert r.status_code == 422 and "application/json" in r.json()["detail"], r.text
