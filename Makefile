# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-slow demo venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet ".[test]"
	touch $(STAMP)

# The whole product on one machine: emulators, installer, authorisation, several sync runs.
# `make demo ARGS=--keep-running` leaves the emulators up for curl until Ctrl-C.
demo: $(STAMP)
	$(PY) -m tools.demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" $(ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(ARGS)

clean:
	rm -rf $(VENV) dist .pytest_cache
