# Two commands set everything up on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NO_DEPS_TEST_PKGS := msclap==1.3.4 torchlibrosa==0.1.0

.PHONY: demo test venv clean reproduce

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

# The paper's ESC-50 tables with the real MS-CLAP 2022 on a GPU, compared with the paper (README: "Reproducing the
# paper"). DATA holds (or receives) ESC50/, clotho/, LJSpeech/ and optionally UrbanSound8K/. SMOKE=1: offline, test size.
DATA ?= data
OUT ?= results/reproduce
DEVICE ?= cuda
reproduce: $(STAMP)
	$(PY) recipes/ESC50/interpret/reproduce.py --output_folder=$(OUT) $(if $(SMOKE),--smoke,--device=$(DEVICE) \
	    --data_folder=$(DATA)/ESC50 --clotho_folder=$(DATA)/clotho --speech_folder=$(DATA)/LJSpeech \
	    --urbansound8k_folder=$(DATA)/UrbanSound8K)

clean:
	rm -rf $(VENV) results
