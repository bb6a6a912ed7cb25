# embedscope — `make help` lists the targets. Every target works on a fresh clone:
# the first one run creates .venv and installs the package into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DB     ?= demo/db
DROP   ?=
PYTEST_ARGS ?=
BUNDLE := embedscope/dashboard/static/plotly-embedscope.min.js
BUNDLE_SRC := $(addprefix tools/plotly-bundle/,package.json package-lock.json traces.json build.js)

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast ingest stats watch analyze dashboard bench bench-quick plotly-bundle clean

help: ## list the targets
	@grep -E '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -e '.[dev]'
	# SAM2 compiles against the installed torch, so it cannot use pip's build isolation
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install --no-build-isolation 'sam2==1.1.0'
	touch $(STAMP)

# the dashboard's trimmed plotly.js (tools/plotly-bundle/README.md); without node and npm, or
# offline, the dashboard uses plotly.py's full bundle and says so
$(BUNDLE): $(BUNDLE_SRC)
	@if command -v npm >/dev/null 2>&1; then \
	  (cd tools/plotly-bundle && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build) \
	    || echo "warning: building the trimmed plotly.js failed; the dashboard will use plotly.py's full bundle"; \
	else echo "warning: no npm: the dashboard will use plotly.py's full plotly.js (install node and npm, then make plotly-bundle)"; fi

install: $(STAMP) $(BUNDLE) ## create .venv; install embedscope with every extra (ray, s3), its test tools and SAM2; build the dashboard's plotly.js

demo: install ## build a demo drop (needs no network), ingest and analyse it into demo/db, say how to explore it
	$(BIN)/python -m embedscope.demo --out demo

test: install ## run the whole test suite (unit, integration, daemon, browser)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install ## the tests not marked slow, browser or daemon
	$(BIN)/python -m pytest -m "not slow and not browser and not daemon" $(PYTEST_ARGS)

ingest: install ## one-shot ingest: make ingest DROP=path [DB=path] [ARGS="--label-from-folder"]
	@test -n "$(DROP)" || { echo "usage: make ingest DROP=path [DB=path]"; exit 2; }
	$(BIN)/embedscope ingest $(DROP) --db $(DB) $(ARGS)

watch: install ## ingest continuously: make watch DROP=path [DB=path] [ARGS="--interval 5"] (Ctrl-C stops)
	@test -n "$(DROP)" || { echo "usage: make watch DROP=path [DB=path]"; exit 2; }
	$(BIN)/embedscope watch $(DROP) --db $(DB) $(ARGS)

stats: install ## row counts of DB
	$(BIN)/embedscope stats --db $(DB)

dashboard: install ## serve the dashboard for DB on 127.0.0.1:8050: make dashboard DB=path [ARGS="--port 8051"]
	$(BIN)/embedscope dashboard --db $(DB) $(ARGS)

bench: install ## every benchmark at full size (100k/1M analysis and verdicts, 300k+1M search, SAM2, Ray): ~7 h on 2 cores, stated first
	$(BIN)/python -m benchmarks.run $(ARGS)

bench-quick: install ## every benchmark at smoke size, each line as measured; aim 3 min on 2 quiet cores (expected time printed first; Ray skipped)
	$(BIN)/python -m benchmarks.run --quick $(ARGS)

analyze: install ## analyse DB (clusters, projections, novelty...): make analyze DB=path [ARGS="--cluster kmeans"]
	$(BIN)/embedscope analyze --db $(DB) $(ARGS)

plotly-bundle: ## rebuild the dashboard's trimmed plotly.js (needs node and npm; make install builds it once)
	rm -f $(BUNDLE) $(BUNDLE).gz
	$(MAKE) $(BUNDLE)

clean: ## remove the demo output and caches (keeps .venv)
	rm -rf demo .pytest_cache bench-results.json .bench
