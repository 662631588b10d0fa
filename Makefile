# Kerbside: `make run` for a working server on real data, `make test` for the whole suite.
SHELL := /bin/bash
PY := .venv/bin/python
TEST_DB ?= kerbside_test

.PHONY: run test install db stop migrate import seed tokens clean-data

install:  ## install system packages and the pinned Python environment
	@scripts/install.sh

db: install  ## start (and initialise once) the local PostGIS cluster under .data/
	@scripts/pg.sh start

run: install  ## set up everything and run the API + worker in the foreground
	@scripts/run.sh

test: install  ## the whole suite against a throwaway database
	@scripts/pg.sh start
	@scripts/pg.sh createdb $(TEST_DB)
	@set -o pipefail; KERBSIDE_ENV=test KERBSIDE_DATABASE_URL="$$(scripts/pg.sh url $(TEST_DB))" \
	  $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; scripts/pg.sh dropdb $(TEST_DB) || true; exit $$rc

stop:  ## stop the local database
	@scripts/pg.sh stop

migrate: db
	@$(PY) -m server.cli migrate

import: db
	@$(PY) -m server.cli import-gis

seed: db
	@$(PY) -m server.cli seed

tokens: db
	@$(PY) -m server.cli demo-tokens
