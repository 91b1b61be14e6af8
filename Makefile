# Two commands set everything up on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NO_DEPS_TEST_PKGS := msclap==1.3.4 torchlibrosa==0.1.0

.PHONY: demo test venv clean

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --no-deps $(NO_DEPS_TEST_PKGS)
	$(PY) -m pip install --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m speechbrain_lmaczs.demo $(if $(QUICK),--quick,)

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) results
