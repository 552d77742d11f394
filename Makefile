# shoal — every target sets up what it needs (idempotent; quick when already done).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_STAMP := .venv-apt.stamp
# Debian packages shoal drives (runtime, networking, peers for benchmarks).
APT_PACKAGES := make curl busybox-static runc tini conmon golang-github-containers-common docker-registry apache2-utils \
  containernetworking-plugins iptables iproute2 bind9-dnsutils

.PHONY: setup demo test lint typecheck unit bench clean

$(APT_STAMP): Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@touch $@

$(STAMP): pyproject.toml $(APT_STAMP)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

setup: $(STAMP)

demo: setup
	@scripts/demo.sh

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q

test: lint unit

BENCH_APT := docker-compose docker.io dnsperf dnsmasq-base

bench: setup
	@missing=""; for p in $(BENCH_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi
	$(PY) bench/compose_load.py
	$(PY) bench/scheduler.py
	$(PY) bench/store_ops.py
	$(PY) bench/api.py
	$(PY) bench/dns.py
	cd bench && ../$(PY) network.py
	cd bench && ../$(PY) updates.py

clean:
	rm -rf $(VENV) $(APT_STAMP) .pytest_cache .mypy_cache .ruff_cache
