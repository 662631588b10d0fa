# Kerbside: `make run` for a working server on real data, `make test` for the whole suite.
SHELL := /bin/bash
PY := .venv/bin/python
TEST_DB ?= kerbside_test

.PHONY: run test fuzz install db stop migrate import seed tokens clean-data mobile bench bench-all bench-intake bench-notify

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

FUZZ_EXAMPLES ?= 200
fuzz: install  ## the long Schemathesis run: FUZZ_EXAMPLES inputs per operation and mode, new ones each run
	@scripts/pg.sh start
	@scripts/pg.sh createdb kerbside_test_fuzz
	@set -o pipefail; KERBSIDE_ENV=test KERBSIDE_DATABASE_URL="$$(scripts/pg.sh url kerbside_test_fuzz)" \
	  KERBSIDE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) KERBSIDE_FUZZ_RANDOM=1 \
	  $(PY) -m pytest tests/fuzz -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; scripts/pg.sh dropdb kerbside_test_fuzz || true; exit $$rc

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

mobile: install  ## the Kivy field app on this desktop (fake GPS + camera); sign in to a server from `make run`
	@KIVY_NO_ARGS=1 KERBSIDE_APP_DATA="$${KERBSIDE_APP_DATA:-.data/fieldapp}" $(PY) -m mobile.main

bench: db  ## the whole benchmark (issue 16): intake vs two baselines, snap 1M/10M, reads vs pygeoapi, SLA sweep, field sync, growth curve; rewrites bench/RESULTS.md (15–40 min on 2 cores, ~8 GB disk while it runs)
	@test -x .venv-bench/bin/python || python3 -m venv .venv-bench
	@.venv-bench/bin/pip install -q -r requirements-bench.txt
	@command -v wrk >/dev/null || { echo "wrk is missing: make install (or apt-get install -y wrk)"; exit 1; }
	@$(PY) -m bench.suite run $(BENCH_ARGS)

bench-all: bench  ## the same as bench

bench-intake: db  ## the intake alone against both baselines (prints a table; does not touch RESULTS.md)
	@$(PY) -m bench.intake run --assets 1000000 --duration 30 --connections 16 --workers 2

bench-notify: db  ## what notifying reporters adds to the intake (issue 14): with and without a contact, 1M lamp columns
	@$(PY) -m bench.notify_cost run --assets 1000000 --duration 5 --rounds 18
