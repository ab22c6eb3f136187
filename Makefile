# The two commands a newcomer needs: `make preview` and `make test`. Both create .venv when needed.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Every environment installs from a hashed lock in requirements/ (transitive dependencies included), compiled by
# `make lock` from the requirements/*.in next to it. preview.txt is a subset of dev.txt at the same versions, so
# `make preview` and `make test` run the same packages. `make preview` installs only what the preview needs.
PREVIEW_STAMP := $(VENV)/.installed-preview
# Checkov's pins conflict with the program's (requirements/checkov.in says which): a venv of its own, inside .venv.
CHECKOV_STAMP := $(VENV)/checkov/.installed
# A real Prometheus for the tests of every PromQL query (tests/prometheus.py): Debian's package, unpacked, no service.
PROMETHEUS_STAMP := $(VENV)/prometheus/.installed
STACK  ?= dev
PIP_INSTALL = -m pip install --quiet --disable-pip-version-check --require-hashes

.PHONY: preview test lint typecheck unit bench mutate lock clean

$(PREVIEW_STAMP): requirements/preview.txt pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) $(PIP_INSTALL) -r requirements/preview.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(STAMP): $(PREVIEW_STAMP) requirements/dev.txt
	$(PYTHON) $(PIP_INSTALL) -r requirements/dev.txt
	touch $@

$(CHECKOV_STAMP): requirements/checkov.txt
	test -x $(VENV)/checkov/bin/python || python3 -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python $(PIP_INSTALL) -r requirements/checkov.txt
	touch $@

$(PROMETHEUS_STAMP):
	rm -rf $(VENV)/prometheus && mkdir -p $(VENV)/prometheus
	cd $(VENV)/prometheus && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg -x $(VENV)/prometheus/prometheus_*.deb $(VENV)/prometheus && rm $(VENV)/prometheus/prometheus_*.deb
	$(VENV)/prometheus/usr/bin/prometheus --version | head -1
	touch $@

preview: $(PREVIEW_STAMP)
	$(VENV)/bin/llm-mesh preview --stack $(STACK)

test: lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy policies/__main__.py

unit: $(STAMP) $(CHECKOV_STAMP) $(PROMETHEUS_STAMP)
	$(PYTHON) -m pytest -n auto

# The offline preview's time and memory; then the balancing model (about 35 s on one core).
bench: $(STAMP)
	$(PYTHON) benchmarks/offline_preview.py
	$(PYTHON) benchmarks/balancing.py

# Mutation testing (mutmut) of the decision modules and the policy rules: killed / total, survivors by module and
# function, what each survivor changed in .mutmut/survivors.diff. Slow (each mutant runs the tests that reach it).
# Some files only: make mutate MUTATE="policies/llm_mesh_policies/mesh.py llm_mesh/plan/config/rules.py"
MUTATE ?=
mutate: $(STAMP) $(CHECKOV_STAMP) $(PROMETHEUS_STAMP)
	$(PYTHON) tools/mutate.py $(MUTATE)

# Recompile every lock from requirements/*.in (needs the package index). dev.txt is resolved first and constrains
# the program's, the preview's and the policy pack's locks, so each is a subset of it at the same versions.
# requirements.txt and policies/requirements.txt are locks too: they are what `pulumi up` and
# `pulumi preview --policy-pack policies` install by themselves.
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock"
lock: $(STAMP)
	$(UV_COMPILE) requirements/dev.in -o requirements/dev.txt
	$(UV_COMPILE) requirements/checkov.in -o requirements/checkov.txt
	$(UV_COMPILE) -c requirements/dev.txt requirements/program.in -o requirements.txt
	$(UV_COMPILE) -c requirements/dev.txt requirements/preview.in -o requirements/preview.txt
	$(UV_COMPILE) -c requirements/dev.txt requirements/policy-pack.in -o policies/requirements.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .mutmut
