# make serve   install what is missing, then serve on 127.0.0.1:7000 with public/ as storage
# make lint    ruff, mypy and the import contracts (the layers; no ImageMagick in gunicorn's master),
#              all configured in pyproject.toml
# make test    install what is missing, then run the test suite but its slow tests (in 3 processes)
# make test-slow  the slow tests (packaging, pinned floors, load, drains, corpus, schemathesis)
# make test-all   both, as CI runs them
# make test-fast  the tests that start no server or other process and are not slow: under a minute
# make test-debian13  make test-all again on Debian 13 / ImageMagick 7, in a debootstrap root (root only)
# make dev-server-s3, make dev-server-manta: serve with images kept in S3 or Manta (see below)
# make soak    drive a 2-worker server for SOAK_SECONDS (default 300) and report; not part of make test
# make bench   install what is missing, then run the benchmark (a few minutes; see bench/README.md)
# make bench-debian13  the same bench on Debian 13 / ImageMagick 7, in the debootstrap root (root only)
# make chaos   inject faults into a live server (CHAOS_SECONDS each, default 20) and report; not part of make test
# make deps    install what is needed (the original's name for make install)
# make build   an sdist and a wheel in dist/, checked with twine
# make release refuse unless imageserver/core/version.py names a new, untagged version and the tree is
#              clean; then build, check, tag v<version>, and print the upload command (uploads nothing)
VENV := .venv
PYTHON ?= python3
IMAGES := $(VENV)/bin/images
SOAK_SECONDS ?= 300
SOAK_CLIENTS ?= 6
CHAOS_SECONDS ?= 20

.PHONY: install system-packages serve dev-server dev-server-s3 dev-server-manta lint test test-slow test-all test-fast tests \
	test-debian13 soak chaos bench bench-debian13 clean deps build release

install: system-packages $(VENV)/.installed

system-packages:
	@scripts/install-system-packages

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# PORT and PUBLIC change where `make serve` listens and keeps images (make serve PORT=7100).
PORT ?= 7000
PUBLIC ?= public
serve: install
	$(IMAGES) --listen 127.0.0.1 --port $(PORT) --local_base_path $(PUBLIC) server

# The original's name: serves on local disk, with the outputs of every upload from IMG_OUTPUTS.
dev-server: install
	$(IMAGES) server

# The original's targets for a remote store, from the environment variables its README names.
# Only these targets read the bare variables (the server itself reads flags and IMG_* only).
# Local disk is then a cache (IMG_LOCAL_BASE_PATH, default public/); every IMG_* variable applies.
# S3: AWS_BUCKET, AWS_REGION, IMG_REMOTE_BASE_PATH, IMG_REMOTE_BASE_URL, IMG_OUTPUTS; credentials
# from AWS_ACCESS_KEY_ID with AWS_SECRET_KEY (or AWS_SECRET_ACCESS_KEY), or boto3's other sources.
dev-server-s3: install
	$(call require,AWS_BUCKET)
	AWS_SECRET_ACCESS_KEY="$${AWS_SECRET_ACCESS_KEY:-$$AWS_SECRET_KEY}" \
	  $(IMAGES) --local_base_path "$${IMG_LOCAL_BASE_PATH:-public}" --aws_bucket "$$AWS_BUCKET" \
	  $${AWS_REGION:+--aws_region "$$AWS_REGION"} server

# Manta: MANTA_URL, MANTA_USER, MANTA_KEY_ID, SDC_IDENTITY (else the ssh-agent's key),
# IMG_MANTA_BASE_PATH (e.g. public/images), IMG_OUTPUTS.
dev-server-manta: install
	$(call require,MANTA_URL MANTA_USER MANTA_KEY_ID IMG_MANTA_BASE_PATH)
	$(IMAGES) --local_base_path "$${IMG_LOCAL_BASE_PATH:-public}" --manta_url "$$MANTA_URL" \
	  --manta_user "$$MANTA_USER" --manta_key_id "$$MANTA_KEY_ID" \
	  $${SDC_IDENTITY:+--sdc_identity "$$SDC_IDENTITY"} --remote_base_path "$$IMG_MANTA_BASE_PATH" server

require = $(foreach name,$(1),$(if $($(name)),,$(error make $@ needs the environment variable $(name))))

# Each runs whatever the others find: all three report before make stops.
lint: install
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	$(VENV)/bin/lint-imports || status=1; \
	exit $$status

# In several processes (pytest-xdist): the system tests mostly wait on sockets and sleeps, so more
# workers than cores pay (on 2 cores, 3 were as fast as 4, with less CPU). Then the tests marked
# `quiet` (they assert how long something took), alone. $(1): which tests, as a marker expression.
# Both runs report before make stops; PYTEST_ARGS go to both (a run they leave empty is no failure).
TEST_WORKERS ?= 3
define run-tests
	@status=0; \
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "($(1)) and not quiet" $(PYTEST_ARGS) \
		|| [ $$? -eq 5 ] || status=1; \
	$(VENV)/bin/pytest -q -m "($(1)) and quiet" $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	exit $$status
endef

test: install
	$(call run-tests,not slow)

test-slow: install
	$(call run-tests,slow)

test-all: test test-slow

# What starts a server or another process is marked `spawns` (setup.cfg), every system test among them;
# what takes long is marked `slow`: make test-slow runs those, make test the rest.
test-fast: install
	$(VENV)/bin/pytest -q -m "not spawns and not slow" tests/unit tests/app $(PYTEST_ARGS)

# make test-all again on Debian 13 (ImageMagick 7, Python 3.13), in a debootstrap root (as root).
test-debian13:
	scripts/test-debian13

tests: test

soak: install
	$(VENV)/bin/python -m tests.soak --seconds $(SOAK_SECONDS) --clients $(SOAK_CLIENTS)

chaos: install
	$(VENV)/bin/python -m tests.chaos --seconds $(CHAOS_SECONDS)

$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

# BENCH_FLAGS: e.g. "--seconds 5 --only 1,2" (python -m bench --help)
bench: install $(VENV)/.bench-installed
	$(VENV)/bin/python -m bench $(BENCH_FLAGS)

# The same bench in the Debian 13 root of `make test-debian13`; results in bench/imagemagick7/.
bench-debian13: $(VENV)/.bench-installed
	$(VENV)/bin/python -c "from bench import inputs; inputs.make_all('bench/work')"
	DEBIAN13_BENCH=1 BENCH_FLAGS="$(BENCH_FLAGS)" scripts/test-debian13

deps: install

# From scratch each time: a build/ left by an older tree would put files removed since in the wheel.
define build-and-check
	rm -rf build dist
	$(VENV)/bin/python -m build --outdir dist .
	$(VENV)/bin/twine check --strict dist/*
endef

build: install
	$(build-and-check)

# The version, read where it is written once.
VERSION = $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' imageserver/core/version.py)

release: install
	@$(VENV)/bin/python scripts/check-release "$(VERSION)"
	$(build-and-check)
	git tag -a "v$(VERSION)" -m "imageserver $(VERSION)"
	@echo "Tagged v$(VERSION); nothing was uploaded. To publish it:"
	@echo "  git push origin v$(VERSION)"
	@echo "  $(VENV)/bin/twine upload dist/*"

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache build dist
