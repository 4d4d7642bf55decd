# mlbase: every set-up step lives here so that a fresh clone needs only `make synth` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
# Node 20 is past its end of life for jsii; the warning banner would drown the synth output.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

VENV := .venv
PY := $(VENV)/bin/python
STAMP := .make

.PHONY: lock prereqs synth synth-deps deps test lint typecheck unit cfn-lint hadolint packer-check demo bench simulate review diagram preflight clean help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# Synth needs only the CDK app's dependencies (requirements.txt, about 0.5 GB); tests, the Lambdas' and the worker's
# runtime (torch among them) come on top with requirements-dev.txt. Every install is from a lock with hashes
# (compiled by `make lock` from the .in files next to them).
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check --require-hashes
$(STAMP)/venv-synth: requirements.txt
	@mkdir -p $(STAMP)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt
	@touch $@

$(STAMP)/venv: requirements-dev.txt $(STAMP)/venv-synth
	$(PIP_INSTALL) -r requirements-dev.txt
	@touch $@

# checkov in its own environment: its dependencies would move the project's pins (tests/infra/test_checkov.py).
$(STAMP)/venv-checkov: tools/checkov/requirements.txt
	@mkdir -p $(STAMP)
	@test -x .venv-checkov/bin/python || python3 -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r tools/checkov/requirements.txt
	@touch $@

$(STAMP)/npm: package.json package-lock.json
	@mkdir -p $(STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: $(STAMP)/venv $(STAMP)/venv-checkov $(STAMP)/npm ## install Python and npm dependencies

synth-deps: $(STAMP)/venv-synth $(STAMP)/npm

synth: synth-deps ## synthesize every stack of every account into cdk.out/ (installs the synth dependencies only)
	@rm -rf cdk.out
	npx cdk synth --quiet --output cdk.out
	$(PY) -m tools.synth_summary cdk.out

lint: $(STAMP)/venv ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)/venv ## mypy on the typed packages
	$(VENV)/bin/mypy

unit: deps ## pytest (synth, cdk-nag, cfn-lint, snapshots, runtime tests)
	$(VENV)/bin/pytest -q

# Tools from outside PyPI and npm that the tests run; missing ones stop `make test` with the command that installs them.
prereqs: ## check the system tools the tests need (node, npm, dot, packer, gs)
	@missing=0; \
	for entry in "node:Node.js 20 (https://nodejs.org, or apt-get install nodejs npm)" "npm:apt-get install npm" \
	    "dot:apt-get install graphviz" "packer:apt-get install packer (or HashiCorp's release)" \
	    "gs:apt-get install ghostscript (the decoder's proof that PostScript is never rendered)"; do \
	  tool=$${entry%%:*}; how=$${entry#*:}; \
	  if ! command -v $$tool >/dev/null; then echo "make test needs $$tool: $$how" >&2; missing=1; fi; \
	done; exit $$missing

test: prereqs lint typecheck unit ## the whole gate

snapshot-update: deps ## rewrite the template snapshots after a reviewed change
	$(VENV)/bin/pytest -q tests/infra --snapshot-update

demo: deps ## run the photo pipeline locally against moto on 127.0.0.1
	$(PY) -m tools.demo

bench: $(STAMP)/venv ## worker throughput benchmark (decode, model, end to end)
	$(PY) -m worker.bench

simulate: $(STAMP)/venv ## scaling simulator gate; without ARGS also regenerates docs/scaling.{md tables,png}
	$(PY) -m tools.scaling_sim $(if $(ARGS),$(ARGS),--write-docs)

ifneq ($(filter preflight,$(MAKECMDGOALS)),)
ifndef PROFILE
$(error usage: make preflight PROFILE=prod (or PROFILE=research), the AWS CLI profile of the account to check)
endif
endif
preflight: synth ## read-only check of one account before deploying (PROFILE=prod or PROFILE=research)
	$(PY) -m tools.preflight --profile $(PROFILE) --config $(or $(MLBASE_CONFIG),config/platform.yaml) --assembly cdk.out \
	    $(if $(ENDPOINT_URL),--endpoint-url $(ENDPOINT_URL),)

# The three locks: synth, the worker's own set (its image installs it too), and the test set, constrained by both so
# that every shared package has one version. pip-compile reads pip's own index settings; nothing machine-specific
# is written into the locks.
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	--no-emit-find-links --no-emit-trusted-host $(if $(UPGRADE),--upgrade,)
lock: $(STAMP)/venv ## compile each .in file into the hash lock beside it (.txt); UPGRADE=1 takes newer releases
	$(PIP_COMPILE) -o requirements.txt requirements.in
	$(PIP_COMPILE) -o worker/requirements.txt worker/requirements.in
	$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in
	$(PIP_COMPILE) -o tools/checkov/requirements.txt tools/checkov/requirements.in

clean: ## remove build outputs (keeps .venv and node_modules)
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
review: deps ## report what the synthesized templates change against the snapshots (or BASE=<rev>)
	$(PY) -m tools.review $(if $(BASE),--base $(BASE),) $(ARGS)
diagram: deps ## draw the platform from the cloud assembly into docs/architecture.{png,svg}
	$(PY) -m tools.diagram cdk.out docs/architecture
