"""Key → principal caching: how long a revoked key can still work, and no longer."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from service.auth import PrincipalCache
from service.models import ApiKey
from tests.helpers import create_key, create_unit, make_client, ok


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _revoke_all_keys(client) -> None:
    """Revoke in the database, behind the API's back (as an operator's SQL would)."""
    with client.app.state.db.unit_of_work() as session:
        session.execute(update(ApiKey).values(revoked_at=datetime.now(UTC)))


def _used_then_revoked_key(client) -> dict[str, str]:
    create_unit(client, "wy")
    key = create_key(client, "wy")
    ok(client.get("/api/v1/units/wy", headers=key))  # now cached (when caching is on)
    _revoke_all_keys(client)
    return key


def test_a_revoked_key_stops_working_when_its_cache_entry_expires(db_url):
    with make_client(db_url, auth_cache_s=5) as client:
        clock = FakeMonotonic()
        client.app.state.principals.clock = clock
        key = _used_then_revoked_key(client)
        clock.now += 4.9  # within the documented bound the cached principal still answers
        ok(client.get("/api/v1/units/wy", headers=key))
        clock.now += 0.2
        assert client.get("/api/v1/units/wy", headers=key).status_code == 401


def test_forgetting_revokes_at_once_in_this_process(db_url):
    with make_client(db_url, auth_cache_s=60) as client:
        key = _used_then_revoked_key(client)
        client.app.state.principals.forget_all()
        answer = client.get("/api/v1/units/wy", headers=key)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_without_a_cache_every_request_reads_the_key(db_url):
    with make_client(db_url, auth_cache_s=0) as client:
        key = _used_then_revoked_key(client)
        assert client.get("/api/v1/units/wy", headers=key).status_code == 401


def test_unknown_keys_are_not_cached_and_a_raced_lookup_is_not_stored(db_url):
    with make_client(db_url, auth_cache_s=60) as client:
        create_unit(client, "wy")
        cache = client.app.state.principals
        assert (
            client.get("/api/v1/units/wy", headers={"Authorization": "Bearer nope"}).status_code
            == 401
        )
        assert cache._entries == {}
        key = create_key(client, "wy")
        ok(client.get("/api/v1/units/wy", headers=key))  # a new key works at once
        token = key["Authorization"].removeprefix("Bearer ")
        principal = cache.get(token)
        assert principal is not None and principal.unit_code == "wy"

    racing = PrincipalCache(ttl_s=60)
    generation = racing.generation()  # a lookup starts reading the database …
    racing.forget_all()  # … a revocation is announced meanwhile …
    racing.put("dbn_x", principal, generation)  # … so what it read is not kept
    assert racing.get("dbn_x") is None


def test_an_admin_lists_keys_without_secrets_and_revokes_one_at_once(db_url):
    from tests.helpers import ADMIN

    with make_client(db_url, auth_cache_s=60) as client:  # a cache that would hold it a minute
        create_unit(client, "wy", "原阳县人民政府", level="city")
        lost = create_key(client, "wy")
        kept = create_key(client, "wy")
        ok(client.get("/api/v1/units", headers=lost))  # cached now
        listed = ok(client.get("/api/v1/api-keys", headers=ADMIN))["items"]
        secret = lost["Authorization"].split()[1]
        assert len(listed) == 2 and all(k["revoked_at"] is None for k in listed)
        assert all(secret not in str(k) and "key" not in k for k in listed)
        target = next(k for k in listed if secret.startswith(k["prefix"]))
        revoked = ok(client.post(f"/api/v1/api-keys/{target['id']}/revoke", headers=ADMIN))
        assert revoked["revoked_at"] and revoked["id"] == target["id"]
        assert client.get("/api/v1/units", headers=lost).status_code == 401
        ok(client.get("/api/v1/units", headers=kept))
        again = ok(client.post(f"/api/v1/api-keys/{target['id']}/revoke", headers=ADMIN))
        assert again["revoked_at"] == revoked["revoked_at"]
