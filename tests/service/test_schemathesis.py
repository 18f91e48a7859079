"""Schemathesis against the in-process app: every operation, positive and negative data.

Any 5xx, any answer not described in /openapi.json, any non-conforming body fails.
"""

from __future__ import annotations

import os
import tempfile

import schemathesis
from hypothesis import HealthCheck, settings

from service import migrations
from service.app import create_app
from service.settings import Settings
from tests.helpers import ADMIN_KEY

EXAMPLES = int(os.environ.get("DUBAN_SCHEMATHESIS_EXAMPLES", "100"))

_tmp = tempfile.mkdtemp(prefix="duban-st-")
_url = f"sqlite:///{_tmp}/st.db"
migrations.upgrade(_url)
app = create_app(
    Settings(
        database_url=_url,
        admin_key=ADMIN_KEY,
        clock="manual",
        clock_start="2026-03-02T09:30:00+08:00",
        channel_allowed_hosts="127.0.0.1",
        rate_limit_per_minute=10_000_000,
    ),
    background=False,
)
# Schema-valid requests may still be refused for business reasons the schema cannot
# express: an unknown unit/project code (422), a duplicate code or a state that does not
# allow the action (409), a stale If-Match (412). Everything else must be 2xx.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "412", "422"]
            }
        },
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


@schema.auth()
class AdminKey:
    """Every generated request is made with the admin key (jurisdiction has its own tests)."""

    def get(self, case, context):
        return ADMIN_KEY

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(case):
    case.call_and_validate()
