# oblio: the targets a newcomer can guess.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# what `make run` needs: the runtime and the local stack, not the CDK toolchain or linters
RUN_STAMP := $(VENV)/.installed-run
ARGS    ?=

.PHONY: install run test unit integration infra console faults lint bench synth deploy clean

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[local]'
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[local,dev,cdk]'
	touch $(STAMP) $(RUN_STAMP)

## install: the runtime and the local stack in .venv (what `make run` installs), no start
install: $(RUN_STAMP)

## run: start the local stack (embedded AWS + API) with the demo tenants and data
run: $(RUN_STAMP)
	$(BIN)/oblio local up $(ARGS)

## test: the whole suite: unit (in-process moto), integration (local stack over HTTP), infra,
## and the console in headless Chromium (Debian's chromium package: .ci/run installs it)
# three runs: the unit and infra suites use moto's in-process mock, the integration suite a
# moto server in the same process, the console suite a local stack of its own; none of the
# three can share a process with another
# the unit and integration runs spread their files over JOBS processes (pytest-xdist; each
# integration worker starts a local stack of its own; 2: the machine's cores): JOBS=1 runs
# them in one process
JOBS ?= 2
PARALLEL = $(if $(filter 1,$(JOBS)),,-n $(JOBS) --dist loadfile)
test: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(wildcard tests/infra) -q $(PARALLEL)
	$(BIN)/python -m pytest tests/integration -q $(PARALLEL)
	$(BIN)/python -m pytest tests/console -q
	$(BIN)/python -m pytest tests/faults -q

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q $(ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q $(ARGS)

infra: $(STAMP)
	$(BIN)/python -m pytest tests/infra -q $(ARGS)

## console: the console end to end in headless Chromium; screenshots to docs/console/
console: $(STAMP)
	$(BIN)/python -m pytest tests/console -q $(ARGS)

## faults: the small fault suite (a local stack of its own under task, DynamoDB and S3 faults);
## the full run: python -m tests.faults.run --task 0.2 --throttle 0.2 --s3 0.1 --requests 70 --bulk 200
faults: $(STAMP)
	$(BIN)/python -m pytest tests/faults -q $(ARGS)

## lint: ruff and mypy (strict on the domain)
lint: $(STAMP)
	$(BIN)/ruff check layers functions infra tests
	$(BIN)/mypy layers/common/oblio

## bench: the benchmarks; they print figures, they do not assert timings
bench: $(STAMP)
	$(BIN)/python -m tests.bench.erasure $(ARGS)
	$(BIN)/python -m tests.bench.anonymisation $(ARGS)
	$(BIN)/python -m tests.bench.bulk $(ARGS)
	$(BIN)/python -m tests.bench.bulk_report $(ARGS)
	$(BIN)/python -m tests.bench.access $(ARGS)
	$(BIN)/python -m tests.bench.consent $(ARGS)
	$(BIN)/python -m tests.bench.retention $(ARGS)
	$(BIN)/python -m tests.bench.typed $(ARGS)
	$(BIN)/python -m tests.bench.backfill $(ARGS)
	$(BIN)/python -m tests.bench.single_cost
	$(BIN)/python -m tests.bench.capacity

## synth: write the CloudFormation template (no AWS credentials needed)
synth: $(STAMP)
	$(BIN)/python -m infra.cdk.synth

## deploy: deploy the stack to the AWS account of your credentials (see README)
deploy: $(STAMP)
	npx --yes aws-cdk@2 deploy --app "$(BIN)/python -m infra.cdk.app" $(ARGS)

clean:
	rm -rf $(VENV) cdk.out .oblio .pytest_cache
