# Two commands do all the setup on a fresh machine: `make demo` and `make test`.
# Each creates or refreshes .venv from requirements*.txt; when nothing changed that step is a no-op.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export AIRFLOW_HOME ?= $(CURDIR)/var/airflow

.PHONY: venv browser test test-fast demo bench bench-distributed distributed audit serve models-check ui mlflow-ui clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt
	@echo "== installing .venv from requirements.txt (first time: a few minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	@echo "$(CURDIR)/include" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/avalign-include.pth
	@touch $(STAMP)
	@echo "== .venv ready ($$(du -sh $(VENV) | cut -f1))"

# Debian's chromium + chromedriver for the review UI's end-to-end test (tests/review): Playwright's
# own browser download cannot work on this closed network. Quick no-op when both are present.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; else \
	  echo "== installing chromium + chromium-driver (apt) for the browser test"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	fi

test: venv browser
	$(PY) -m pytest tests

test-fast: venv
	$(PY) -m pytest tests -m "not triton and not slow"

demo: venv
	$(PY) -m avalign demo

bench: venv
	$(PY) -m avalign bench

# The distributed profile (docs/distributed.md): PostgreSQL on 127.0.0.1:5432 and Redis on 6379 must run.
distributed: venv
	$(PY) -m avalign distributed

bench-distributed: venv
	$(PY) -m avalign distributed --compare-workers

# Dependency audit of the installed set against PyPI's advisory data (docs/security.md).
audit: venv
	$(VENV)/bin/pip-audit -l --strict --progress-spinner off

serve: venv
	$(PY) -m avalign serve

models-check: venv
	$(PY) -m avalign models check

ui: venv
	$(PY) -m avalign ui

mlflow-ui: venv
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/var/mlflow/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf var/
