# `make demo` and `make test` each build .venv from nothing (Python 3.10+ and make are all they need).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench reliability walkthrough docs clean servers

# The fleet's tests start a real PostgreSQL and a real Redis themselves (tests/servers.py); their programs
# come from Debian's packages, installed here when missing and we are root (CI is). Elsewhere the tests
# that need them skip and say what to install (in CI they fail instead).
servers:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; \
		command -v redis-server >/dev/null || missing="$$missing redis-server"; \
		command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
		if [ -n "$$missing" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m ideochar.demo

lint: $(STAMP)
	$(BIN)/ruff check src providers tests examples docs/scripts
	$(BIN)/ruff format --check src providers tests docs/scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) servers
	$(BIN)/pytest -q

test: $(STAMP) servers
	$(BIN)/ruff check src providers tests examples docs/scripts
	$(BIN)/ruff format --check src providers tests docs/scripts
	$(BIN)/mypy
	$(BIN)/pytest -q -n auto

# Benchmarks (docs/benchmarks.md): the bench extra adds fal-client, matplotlib, psutil and pyinstrument.
$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python tests/bench/run.py

# Reliability (docs/reliability.md): the whole suite in tests/reliability/ with its slow parts (crash and
# resume, the 10,000-job soak, the fault matrix over a real socket) and many hypothesis examples (thousands
# of fault schedules), the named regressions in tests/regressions/, 1,000 jobs finished through faulty
# callbacks (tests/webhooks/test_callbacks_at_scale.py) and 1,000 jobs per vendor sharing one uploaded
# reference (tests/emulator_vendors/test_uploads_once.py); the report is written even when a test fails,
# and then make fails. It ends by printing how many fault schedules were tried.
RELIABILITY_RESULTS := out/reliability

reliability: $(STAMP) servers
	rm -rf $(RELIABILITY_RESULTS) && mkdir -p $(RELIABILITY_RESULTS)
	IDEOCHAR_RELIABILITY=1 IDEOCHAR_RELIABILITY_RESULTS=$(CURDIR)/$(RELIABILITY_RESULTS) \
		$(BIN)/pytest -q tests/reliability tests/regressions tests/webhooks/test_callbacks_at_scale.py \
		tests/emulator_vendors/test_uploads_once.py tests/fleet \
		--junitxml=$(RELIABILITY_RESULTS)/junit.xml; status=$$?; \
		cd tests && IDEOCHAR_RELIABILITY=1 ../$(BIN)/python -m reliability.report ../$(RELIABILITY_RESULTS) \
		../docs/reliability.md; \
		exit $$status

# The walkthrough (tests/walkthrough/): a fresh virtualenv, `pip install .` as the docs say (first without the
# emulator extra), then every command of the README and the docs, every Python example, the plugin how-to's
# `pip install ./examples/ideochar-example-plugin`, and `make demo` from nothing. A few minutes; needs PyPI
# (or a pip mirror). `make test` runs its quick version with this checkout's .venv.
walkthrough: $(STAMP)
	IDEOCHAR_WALKTHROUGH=1 $(BIN)/pytest -q -s tests/walkthrough

# The docs site (docs/, mkdocs.yml): refresh the generated parts (CLI reference, provider matrix), then
# build into site/ with every link and reference checked. `make test` builds it too (tests/docs/).
docs: $(STAMP)
	$(BIN)/python docs/scripts/generate.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) out site .mypy_cache .ruff_cache .pytest_cache
