# onemap — the two commands are `make run` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
ONEMAP := .venv/bin/onemap
SAMPLE ?= var/sample
TILES ?= var/tiles
SEED ?= 7
HOST ?= 127.0.0.1
PORT ?= 8000

SPEED ?= 10
SIMULATE ?= 1

.PHONY: run test setup setup-test system system-test venv npm db sample tiles load admin serve live bench lint clean

## run: install everything, start PostGIS, build + load the sample district, serve the viewer
## with a simulated day moving on it (SIMULATE=0: a still district; SPEED=60: a faster day)
run: setup db sample tiles load admin live

## test: install what tests need and run the whole suite
test: setup-test
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider --durations=25

setup: system venv npm
setup-test: system-test venv npm
	@$(PY) -c "import pytest, playwright" 2>/dev/null || .venv/bin/pip install -q -e '.[test]'

system:
	@bash scripts/install-system-deps.sh
system-test:
	@bash scripts/install-system-deps.sh --with-browser

venv: .venv/.installed
.venv/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[test]'
	@touch $@

npm: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

db:
	$(ONEMAP) db up

sample: $(SAMPLE)/clean/README.txt
$(SAMPLE)/clean/README.txt:
	$(ONEMAP) sample generate --out $(SAMPLE) --seed $(SEED)

tiles:
	$(ONEMAP) tiles build --sample $(SAMPLE) --out $(TILES)

load:
	$(ONEMAP) load sample $(SAMPLE)

## admin: a first admin account if there is none; its password goes to var/initial-admin.txt (0600)
admin:
	$(ONEMAP) users init-admin

serve:
	$(ONEMAP) serve --host $(HOST) --port $(PORT) --tiles $(TILES)

## live: `onemap simulate` in the background (devices, residents, operators through the API), then
## serve; the simulation stops when the server does (Ctrl-C stops both)
live:
	@if [ "$(SIMULATE)" = "0" ]; then exec $(ONEMAP) serve --host $(HOST) --port $(PORT) --tiles $(TILES); fi; \
	$(ONEMAP) simulate --url http://$(HOST):$(PORT) --speed $(SPEED) --wait 300 > var/simulate.log 2>&1 & sim=$$!; \
	trap 'kill -TERM $$sim 2>/dev/null; wait $$sim 2>/dev/null' EXIT INT TERM; \
	echo "simulating a day at speed $(SPEED) (log: var/simulate.log)"; \
	$(ONEMAP) serve --host $(HOST) --port $(PORT) --tiles $(TILES)

## bench: print speed/size figures (see bench/README.md)
bench: setup db
	@.venv/bin/pip install -q -e '.[bench]'
	$(PY) bench/run_all.py

lint:
	$(PY) -m ruff check .

clean:
	-$(ONEMAP) db down
	rm -rf var/tiles var/sample
