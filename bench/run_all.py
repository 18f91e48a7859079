"""`make bench`: run every bench and print its figures."""

from __future__ import annotations

from bench import gate, http_mix, startup

if __name__ == "__main__":
    startup.main()
    gate.main()
    http_mix.main()
