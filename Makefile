# Every target works in one virtual environment, .venv/ in the repository root, created on first use.
# Override the interpreter or the torch pins on the command line, e.g.
#   make test PYTHON=python3.12 TORCH_PIN=torch==2.5.1 TORCHVISION_PIN=torchvision==0.20.1

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
TORCH_PIN ?= torch==2.14.1
TORCHVISION_PIN ?= torchvision==0.29.1
PYTEST_WORKERS ?= 2
# The demo's data: a folder (official cifar-10-batches-py/, downloaded when missing and online, or an
# image-folder tree) or the cifar10-jpeg.tar.gz archive itself.
OCTZOO_DATA ?= ./data
DEMO_EPOCHS ?= 1

VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install; a newer pyproject.toml triggers a reinstall.
STAMP := $(VENV)/.installed

.PHONY: help install demo test lint clean

help:
	@echo "make demo     create .venv if missing, install octzoo, train CIFAR-10 Oct-ResNet-20 briefly and test it"
	@echo "make test     create .venv if missing, install octzoo, run the whole test suite ($(PYTEST_WORKERS) workers)"
	@echo "make lint     ruff check and ruff format --check"
	@echo "make install  only create .venv and install"
	@echo "make clean    remove .venv and build artefacts"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "error: neither python3.11 nor python3 found; run make PYTHON=/path/to/python" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch and torchvision are pinned first, so that resolving octzoo's own ranges never replaces them.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(TORCH_PIN) $(TORCHVISION_PIN)
	$(BIN)/pip install -e '.[test]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/octzoo fit --config configs/cifar10/oct_resnet20.yaml --data.data_dir "$(OCTZOO_DATA)" \
		--data.download true --trainer.max_epochs $(DEMO_EPOCHS) --test_after_fit true

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
