"""`make bench`: run every bench and print its figures."""

from __future__ import annotations

from bench import gate, startup

if __name__ == "__main__":
    startup.main()
    gate.main()
