# One entry point per check; CI calls these same targets.
# Python 3.11 when present, else the python3 on PATH (3.11 or newer).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: install demo browser test lint format bench chaos clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first, pinned, so no resolver ever pulls a multi-GB CUDA build; then the package itself.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/alphaloom demo $(ARGS)

# Debian's chromium for the dashboard's browser tests (Playwright drives it; no browser download).
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "installing chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

test: $(STAMP) browser
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

bench: $(STAMP)
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b $(ARGS) || exit 1; done

# Chaos suite, long form (minutes, not in CI; CI runs the short form in tests/reliability/test_chaos.py):
# venue faults, SIGKILLs, PostgreSQL and Redis crashes during a paper run, compared with an undisturbed one.
# Needs the PostgreSQL server binaries (initdb, pg_ctl) and redis-server; ARGS="--quick" for the short form.
chaos: $(STAMP)
	$(VENV)/bin/alphaloom chaos $(ARGS)

# The service under steady load for minutes, memory sampled (not in CI): make soak ARGS="--minutes 10".
.PHONY: soak
soak: $(STAMP)
	$(PY) scripts/soak.py $(ARGS)

clean:
	rm -rf $(VENV) .alphaloom build dist *.egg-info src/*.egg-info .pytest_cache .ruff_cache
