"""Idempotent creation: retries with the same key never create twins, on both databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import func, select

from service.idempotency import STALE
from service.models import ApiKey, Blocker, IdempotencyKey
from tests.helpers import ADMIN, city, create_project, make_client, ok
from tests.live import live_server

BODY = {"project": "P1", "title": "施工许可证办理", "category": "手续办理"}


def test_same_key_same_body_replays_and_other_body_is_422(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        headers = {**ADMIN, "Idempotency-Key": "k-1"}
        first = client.post("/api/v1/blockers", json=BODY, headers=headers)
        again = client.post("/api/v1/blockers", json=BODY, headers=headers)
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] == again.json()["id"]
        other = client.post(
            "/api/v1/blockers", json={**BODY, "title": "另一个问题"}, headers=headers
        )
        assert other.status_code == 422 and "different request body" in other.json()["detail"]
        elsewhere = client.post("/api/v1/projects", json={"code": "P9", "name": "项目", "category": "省市重点",
                                                          "county": "wy"}, headers=headers)
        assert elsewhere.status_code == 422 and "different request endpoint" in elsewhere.json()["detail"]
        # A failed first attempt does not burn the key.
        bad = client.post(
            "/api/v1/blockers",
            json={**BODY, "project": "NOPE"},
            headers={**ADMIN, "Idempotency-Key": "k-2"},
        )
        assert bad.status_code == 422
        good = client.post(
            "/api/v1/blockers",
            json={**BODY, "project": "P1"},
            headers={**ADMIN, "Idempotency-Key": "k-2"},
        )
        assert good.status_code == 201 and good.json()["id"] != first.json()["id"]
        with client.app.state.db.unit_of_work(readonly=True) as session:
            assert session.exec(select(func.count()).select_from(Blocker)).one() == 2


def test_a_retried_api_key_creation_answers_the_same_key_and_stores_no_secret(db_url):
    with make_client(db_url) as client:
        city(client)
        body = {"name": "省挂图作战系统", "unit": "xx-zb", "scopes": ["read", "write", "admin"]}
        headers = {**ADMIN, "Idempotency-Key": "key-1"}
        first = ok(client.post("/api/v1/api-keys", json=body, headers=headers), 201)
        again = client.post("/api/v1/api-keys", json=body, headers=headers)
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        assert again.json() == first
        secret = first["key"]
        assert client.get("/api/v1/units/wy", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        other = client.post("/api/v1/api-keys", json={**body, "name": "另一个"}, headers=headers)
        assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
        with client.app.state.db.unit_of_work(readonly=True) as session:
            assert session.exec(select(func.count()).select_from(ApiKey)).one() == 1
            stored = session.exec(select(IdempotencyKey)).one().response_body
        assert secret not in str(stored) and stored["id"] == first["id"]
        # The same Idempotency-Key from another credential is its own key: a new API key.
        admin2 = {"Authorization": f"Bearer {secret}", "Idempotency-Key": "key-1"}
        second = ok(client.post("/api/v1/api-keys", json=body, headers=admin2), 201)
        assert second["id"] != first["id"] and second["key"] != secret
        assert ok(client.post("/api/v1/api-keys", json=body, headers=admin2), 201) == second


def test_a_sealed_answer_opens_only_with_the_credential_that_sealed_it():
    from service.idempotency import seal, unseal

    box = seal(b"k" * 32, "dbn_secret")
    assert unseal(b"k" * 32, box) == "dbn_secret"
    assert unseal(b"j" * 32, box) is None
    tampered = {**box, "box": ("00" if box["box"][:2] != "00" else "01") + box["box"][2:]}
    assert unseal(b"k" * 32, tampered) is None


def test_external_ref_dedupes_per_source(db_url):
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        a = client.post("/api/v1/blockers", json={**BODY, "external_ref": "GT-1"}, headers=ADMIN)
        b = client.post("/api/v1/blockers", json={**BODY, "external_ref": "GT-1"}, headers=ADMIN)
        assert a.status_code == 201 and b.status_code == 200 and a.json()["id"] == b.json()["id"]
        # The same reference for another project is not a retry: 409 naming the holder.
        create_project(client, "P2", "wy")
        other = client.post(
            "/api/v1/blockers", json={**BODY, "project": "P2", "external_ref": "GT-1"}, headers=ADMIN
        )
        assert other.status_code == 409 and other.json()["blocker_id"] == a.json()["id"]
        assert "'P1'" in other.json()["detail"], other.text
        with client.app.state.db.unit_of_work(readonly=True) as session:
            assert session.exec(select(func.count()).select_from(Blocker)).one() == 1


def test_100_concurrent_identical_posts_create_exactly_one(db_url):
    with live_server(db_url) as (base, app):
        with httpx.Client(base_url=base, headers=ADMIN) as client:
            city(client)
            create_project(client, "P1", "wy")
        headers = {**ADMIN, "Idempotency-Key": "burst-1"}

        def post(_):
            with httpx.Client(base_url=base, timeout=30) as c:
                return c.post("/api/v1/blockers", json=BODY, headers=headers)

        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(post, range(100)))
        statuses = {r.status_code for r in responses}
        assert statuses <= {201, 409}, statuses
        ids = {r.json()["id"] for r in responses if r.status_code == 201}
        assert len(ids) == 1
        with app.state.db.unit_of_work(readonly=True) as session:
            assert session.exec(select(func.count()).select_from(Blocker)).one() == 1
        # After the burst every retry answers the first response.
        with httpx.Client(base_url=base) as c:
            assert ok(c.post("/api/v1/blockers", json=BODY, headers=headers), 201)["id"] in ids


def test_a_key_held_by_a_request_that_died_is_taken_over_by_its_retry(db_url):
    """A replica killed mid-request leaves its claim with no answer: a retry that finds it
    fresh is told to wait (409, Retry-After); once it is stale the retry is served at once."""
    with make_client(db_url) as client:
        city(client)
        create_project(client, "P1", "wy")
        db = client.app.state.db
        # The fingerprint of this very request, as its first try would have stored it.
        ok(client.post("/api/v1/blockers", json=BODY, headers={**ADMIN, "Idempotency-Key": "probe"}), 201)
        with db.unit_of_work(readonly=True) as s:
            fingerprint = s.exec(select(IdempotencyKey.request_hash)).one()

        def died(key: str, ago: timedelta) -> None:
            with db.unit_of_work() as s:
                now = datetime.now(UTC)
                s.add(IdempotencyKey(principal="admin", key=key, method_path="POST /api/v1/blockers",
                                     request_hash=fingerprint, created_at=now - ago,
                                     expires_at=now + timedelta(hours=48)))

        died("fresh", timedelta(seconds=5))
        waiting = client.post("/api/v1/blockers", json=BODY, headers={**ADMIN, "Idempotency-Key": "fresh"})
        assert waiting.status_code == 409 and waiting.headers["retry-after"] == "1"
        died("stale", STALE + timedelta(seconds=5))
        served = client.post("/api/v1/blockers", json=BODY, headers={**ADMIN, "Idempotency-Key": "stale"})
        assert served.status_code == 201, served.text
        again = client.post("/api/v1/blockers", json=BODY, headers={**ADMIN, "Idempotency-Key": "stale"})
        assert again.status_code == 201 and again.json()["id"] == served.json()["id"]
        with db.unit_of_work(readonly=True) as s:
            assert s.exec(select(func.count()).select_from(Blocker)).one() == 2  # probe + served
