# The two promises of the README:
#   make dev    runs the product locally (DynamoDB Local on 127.0.0.1 + the real function binaries)
#   make test   passes every test (it installs what it needs first)
# Everything else is here for development and release.

SHELL := /bin/bash
.DEFAULT_GOAL := help
export CARGO_TERM_COLOR ?= never

.PHONY: help setup test lint unit e2e chaos-short chaos template-check dev ddb-stop ddb-start demo build fuzz bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: ## Install every tool the tests and the local stack need (idempotent)
	scripts/setup.sh

test: setup lint unit template-check e2e chaos-short ## Install what is missing, then lint, unit + DynamoDB Local tests, template checks, end-to-end, short chaos
	@echo "make test: all checks passed"

lint: ## rustfmt and clippy (-D warnings)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

unit: ## Every cargo test of the workspace (integration tests start DynamoDB Local themselves)
	cargo test --workspace --locked

template-check: ## sam validate --lint (cfn-lint 1.53.3) and the template-vs-code test
	scripts/validate-template.sh

e2e: ## The whole stack under cargo lambda watch, driven by `b24-events send`
	scripts/e2e.sh

chaos-short: ## The short chaos run (DynamoDB Local paused / stopped mid-stream, a burst, a poison message)
	scripts/chaos.sh

chaos: ## The full chaos run: 300 events through a 10 s outage (pause, stop), 1000 at 64 concurrency, poison
	CHAOS_SCALE=full scripts/chaos.sh

dev: ## Run the product locally: DynamoDB Local, moto (SQS), every function, the event-source runner (Ctrl-C stops)
	scripts/dev.sh

ddb-stop: ## Stop DynamoDB Local of a running `make dev` (events park; see README "Lossless ingest")
	scripts/dev-ddb.sh stop

ddb-start: ## Start it again on the same port and data directory (the redrive applies what was parked)
	scripts/dev-ddb.sh start

demo: ## The README demo against a running `make dev` (BASE_URL=... for a deployment)
	scripts/demo.sh

build: ## sam build: the arm64 Lambda artifacts (one per function) (offline, cargo-lambda + zig)
	scripts/build.sh

fuzz: ## Fuzz the decoder for FUZZ_SECONDS (default 60) with cargo fuzz
	scripts/fuzz.sh

bench: ## Every benchmark of BENCHMARKS.md: criterion, DynamoDB costs, CLI vs PHP, cold start (BENCH=cli,... for some)
	scripts/bench.sh

clean: ## Remove build output and local tool installs
	cargo clean
	rm -rf .aws-sam .tools .venv-sam .venv-tools .dev fuzz/target
