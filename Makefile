# duban — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed
export DUBAN_ADMIN_KEY ?= dev-admin-key-change-me
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench demo clean help

help:
	@echo "make run    - set up .venv, migrate SQLite under ./var and serve on http://$(HOST):$(PORT)"
	@echo "make test   - set up .venv with the dev extra and run the whole suite (SQLite + PostgreSQL)"
	@echo "make lint   - ruff"
	@echo "make bench  - run the benches (reduced size) and print their figures"
	@echo "make demo   - a simulated city with reminders, escalations and a chat inbox"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	@mkdir -p var
	$(BIN)/duban db upgrade
	@echo ""
	@echo "  duban is starting on http://$(HOST):$(PORT)"
	@echo "  API docs:  http://$(HOST):$(PORT)/docs"
	@echo "  admin key: $(DUBAN_ADMIN_KEY)   (Authorization: Bearer <key>; set DUBAN_ADMIN_KEY to change)"
	@echo "  database:  $${DUBAN_DATABASE_URL:-sqlite:///./var/duban.db}"
	@echo ""
	$(BIN)/duban serve --host $(HOST) --port $(PORT) --no-migrate

demo: $(RUN_STAMP)
	@mkdir -p var
	$(BIN)/duban demo --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/ruff check service workflows notifiers tests bench
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check service workflows notifiers tests bench
	$(BIN)/ruff format --check service workflows notifiers bench

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) var .pytest_cache
