"""`make bench`: run every bench and print its figures."""

from __future__ import annotations

import sys

from bench import (
    burst_floor,
    ceiling,
    deliveries,
    gate,
    http_mix,
    latency,
    outbox_history,
    startup,
    timers_scale,
)

if __name__ == "__main__":
    startup.main()
    gate.main()
    http_mix.main()
    sys.argv = ["ceiling"]
    ceiling.main()
    deliveries.main()
    latency.main()
    sys.argv = ["outbox_history", "--n", "200000"]  # full size: python -m bench.outbox_history
    outbox_history.main()
    # The full-size timer bench (1,000,000 blockers, 100,000 deadlines) takes most of an
    # hour here; `make bench` runs it smaller. Full size: python -m bench.timers_scale
    sys.argv = ["timers_scale", "--n", "100000", "--burst", "5000", "--jobs", "10000"]
    timers_scale.main()
    sys.argv = ["burst_floor", "--burst", "5000"]  # full size: --burst 100000
    burst_floor.main()
