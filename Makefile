# The two commands a newcomer needs: `make preview` and `make test`. Both create .venv when needed.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# `make preview` installs only what the preview needs (requirements-preview.txt); `make test` the rest.
PREVIEW_STAMP := $(VENV)/.installed-preview
# Checkov's pins conflict with the program's (requirements-checkov.txt says which): a venv of its own, inside .venv.
CHECKOV_STAMP := $(VENV)/checkov/.installed
STACK  ?= dev

.PHONY: preview test lint typecheck unit bench mutate clean

$(PREVIEW_STAMP): requirements.txt requirements-preview.txt pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-preview.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(STAMP): $(PREVIEW_STAMP) requirements-dev.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(VENV)/checkov/bin/python || python3 -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

preview: $(PREVIEW_STAMP)
	$(VENV)/bin/llm-mesh preview --stack $(STACK)

test: lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy policies/__main__.py

unit: $(STAMP) $(CHECKOV_STAMP)
	$(PYTHON) -m pytest -n auto

bench: $(STAMP)
	$(PYTHON) benchmarks/offline_preview.py

# Mutation testing (mutmut) of the decision modules and the policy rules: killed / total, survivors by module and
# function, what each survivor changed in .mutmut/survivors.diff. Slow (each mutant runs the tests that reach it).
# Some files only: make mutate MUTATE="policies/llm_mesh_policies/mesh.py llm_mesh/plan/config.py"
MUTATE ?=
mutate: $(STAMP) $(CHECKOV_STAMP)
	$(PYTHON) tools/mutate.py $(MUTATE)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .mutmut
