"""`duban dispatch` stopped with SIGTERM (a rolling restart): what a robot already took is
recorded as sent before the process exits, so the next dispatcher does not send it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.notifiers.fakes import WeComRobot
from tests.notifiers.helpers import attempts, create_channel, create_notifications, make_db, rows
from tests.notifiers.test_pipeline import until

DUBAN = str(Path(sys.executable).with_name("duban"))


def test_sigterm_lets_the_message_on_the_wire_land(tmp_path):
    db = make_db(tmp_path)
    with WeComRobot({"good-key"}) as wecom:
        wecom.answer_after_s = 1.0  # the group has it; the answer is on its way
        channel = create_channel(db, "wecom", wecom.url("good-key"))
        (nid,) = create_notifications(db, channel, 1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
        env.update(
            DUBAN_DATABASE_URL=f"sqlite:///{tmp_path}/t.db", DUBAN_CHANNEL_ALLOWED_HOSTS="127.0.0.1"
        )
        worker = subprocess.Popen(
            [DUBAN, "dispatch"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            until(lambda: len(wecom.messages) == 1)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
        (row,) = rows(db, [nid])
        assert row.status == "sent", worker.stdout.read().decode()
        assert [a.ok for a in attempts(db, nid)] == [True]
    db.dispose()
