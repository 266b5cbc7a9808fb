# The one documented way to install, run, lint and test. Everything lives in ./.venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRA ?= cpu

.PHONY: install run test test-slow lint format protos benchmark screenshots clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# Everything, for development and the tests: dev pulls in serve, train and eval.
	$(PY) -m pip install -e ".[$(EXTRA),dev,onnx,openvino,litert]"
	$(PY) -m service._codegen
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m service

protos: install
	$(PY) -m service._codegen

# ruff, then mypy (the files and the strict service/ settings are in pyproject.toml), then pytest.
test: install
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# README images (docs/*.png): the real service and the demo page in headless Chromium.
screenshots: install
	$(PY) -m tests.make_screenshots --out docs

clean:
	rm -rf $(VENV) build *.egg-info
