# Two commands for a new user: `make demo` and `make test`. Both create .venv when needed and
# reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_LOGGING_LEVEL ?= WARNING
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-all bench clean

install: $(STAMP)

# A first install puts about 7 GB into .venv (PyTorch's build is most of it): say so plainly
# when the disk cannot hold it, rather than failing halfway through pip.
NEED_GB ?= 8

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { \
	  free_gb=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  if [ "$$free_gb" -lt $(NEED_GB) ]; then \
	    echo "error: installing .venv needs about $(NEED_GB) GB free on $$(df -P . | awk 'NR==2 {print $$6}'), only $$free_gb GB is; free some space and run make again" >&2; \
	    exit 1; \
	  fi; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/synthmill run configs/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q --runslow

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf datasets reports/bench .prefect .pytest_cache
