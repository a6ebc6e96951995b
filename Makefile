# make serve   install what is missing, then serve on 127.0.0.1:7000 with public/ as storage
# make test    install what is missing, then run the whole test suite
# make soak    drive a 2-worker server for SOAK_SECONDS (default 300) and report; not part of make test
VENV := .venv
PYTHON ?= python3
IMAGES := $(VENV)/bin/images
SOAK_SECONDS ?= 300
SOAK_CLIENTS ?= 6

.PHONY: install system-packages serve dev-server test tests soak clean

install: system-packages $(VENV)/.installed

system-packages:
	@scripts/install-system-packages

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

serve: install
	$(IMAGES) --listen 127.0.0.1 --port 7000 --local_base_path public server

# The original's name: serves on local disk, with the outputs of every upload from IMG_OUTPUTS.
dev-server: install
	$(IMAGES) --local_base_path public server

test: install
	$(VENV)/bin/pytest -q

tests: test

soak: install
	$(VENV)/bin/python -m tests.soak --seconds $(SOAK_SECONDS) --clients $(SOAK_CLIENTS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
