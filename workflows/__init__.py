"""Workflow definitions, the engine (the one gate for state changes), timers, calendar."""
