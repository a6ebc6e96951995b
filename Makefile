# make serve   install what is missing, then serve on 127.0.0.1:7000 with public/ as storage
# make test    install what is missing, then run the whole test suite
# make bench   install what is missing, then run the benchmark (a few minutes; see bench/README.md)
VENV := .venv
PYTHON ?= python3
IMAGES := $(VENV)/bin/images

.PHONY: install system-packages serve dev-server test tests bench clean

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

$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

# BENCH_FLAGS: e.g. "--seconds 5 --only 1,2" (python -m bench --help)
bench: install $(VENV)/.bench-installed
	$(VENV)/bin/python -m bench $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
