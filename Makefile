# vfio.passthrough: one entry point for every check, `make test`.
#
# .venv is built from the exact pins in requirements/*.txt and rebuilt from
# scratch whenever any of those files changes: the stamp's name is a hash of
# their content, so a stale or half-built venv is never reused.
#
# Adding a stage is one line: write its target below and append it to `test`.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# Run every stage even after one fails, so one log shows all problems; make
# still exits non-zero if any stage failed.
MAKEFLAGS += --keep-going

PYTHON ?= python3.11
VENV := .venv
REQUIREMENTS := $(sort $(wildcard requirements/*.txt))
REQUIREMENTS_HASH := $(shell cat $(REQUIREMENTS) | sha256sum | cut -c1-16)
STAMP := $(VENV)/.requirements-$(REQUIREMENTS_HASH)
# The package stage also runs on ansible-core 2.18 (requires_ansible admits it), from a
# second, small venv holding only what tests/packaging needs; same stamp scheme.
VENV_218 := .venv-2.18
REQUIREMENTS_218 := requirements/ansible-core-2.18/packaging.txt
STAMP_218 := $(VENV_218)/.requirements-$(shell sha256sum $(REQUIREMENTS_218) | cut -c1-16)
# Run a command with the venv first on PATH (no global export: $(PYTHON) must
# keep naming the interpreter the venv is built from).
IN_VENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)"
TIMED := tools/timed.sh
# CI logs are files: no terminal colour codes in them.
ifdef CI
export NO_COLOR := 1
export ANSIBLE_NOCOLOR := 1
endif

.PHONY: help venv vm-prefetch test test-fast test-molecule test-vm demo bench units test-playbooks sanity lint docs package package-2.18 clean

help:
	@echo 'make demo       boot a local Debian 13 VM with an emulated Intel IOMMU and run the role against it (DEMO_SUITE=bookworm: Debian 12)'
	@echo 'make bench      benchmark against the guide'"'"'s playbooks -> bench/results.md (root, ~35 min; BENCH_ARGS=--quick)'
	@echo 'make test       everything: test-fast + test-molecule + test-vm (the one command CI runs)'
	@echo 'make test-fast  units + playbook tests + ansible-test sanity + ansible-lint + ansible-doc of every module + package'
	@echo 'make test-molecule  molecule container scenarios (tests/containers/molecule.sh; root, podman)'
	@echo 'make test-vm    real-kernel scenarios in QEMU guests, Debian 13 and 12 (root; builds the VM images once)'
	@echo 'make units      pytest tests/unit'
	@echo 'make test-playbooks  pytest tests/playbooks: the real ansible and ansible-playbook on the playbooks'
	@echo 'make sanity     ansible-test sanity (tools/sanity.sh)'
	@echo 'make lint       ansible-lint --profile production'
	@echo 'make docs       ansible-doc renders for every module'
	@echo 'make package    galaxy build+install, ansible-builder create, antsibull-changelog (tests/packaging)'
	@echo 'make package-2.18  the same tests on ansible-core 2.18 (.venv-2.18)'
	@echo 'make venv       (re)build .venv from requirements/*.txt'
	@echo 'make clean      remove .venv and test output'

# vm-prefetch starts the VM image builds in the background first: they overlap the
# single-threaded stages instead of adding to the wall time (measured in the README).
test: vm-prefetch test-fast test-molecule test-vm

test-fast: units test-playbooks sanity lint docs package package-2.18

venv: $(STAMP)

$(STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	rm -rf $(VENV)
	$(TIMED) venv bash -c '$(PYTHON) -m venv $(VENV) && $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))'
	touch $@

$(STAMP_218):
	rm -rf $(VENV_218)
	$(TIMED) venv-2.18 bash -c '$(PYTHON) -m venv $(VENV_218) && $(VENV_218)/bin/python -m pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS_218)'
	touch $@

units: $(STAMP)
	$(IN_VENV) $(TIMED) units python -m pytest

test-playbooks: $(STAMP)
	$(IN_VENV) $(TIMED) test-playbooks python -m pytest tests/playbooks

sanity: $(STAMP)
	$(IN_VENV) $(TIMED) sanity tools/sanity.sh

# The playbooks and role call vfio.passthrough.* by FQCN: ansible-lint's
# syntax check resolves them through the collection link.
lint: $(STAMP)
	$(IN_VENV) ANSIBLE_COLLECTIONS_PATH="$$(tools/collection-link.sh --collections-path)" \
		$(TIMED) lint ansible-lint --profile production

docs: $(STAMP)
	$(IN_VENV) $(TIMED) docs tools/check-docs.sh

# The tarball ansible-galaxy builds, installed into an empty collections path
# (ansible-doc of every module, the report playbook in check mode),
# `ansible-builder create` of execution-environment.yml, and
# `antsibull-changelog lint` plus a CHANGELOG.md regenerated in a temp copy.
# Writes only under the temp directory, never into the checkout.
package: $(STAMP)
	$(IN_VENV) $(TIMED) package python -m pytest -p no:cacheprovider tests/packaging

package-2.18: $(STAMP_218)
	PATH="$(CURDIR)/$(VENV_218)/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV_218)" \
		$(TIMED) package-2.18 python -m pytest -p no:cacheprovider tests/packaging

# tests/containers/molecule.sh installs podman & co. itself and reuses .venv.
test-molecule: $(STAMP)
	$(IN_VENV) $(TIMED) molecule tests/containers/molecule.sh

# QEMU guests with an emulated IOMMU, Debian 13 and 12, two at a time (tests/vm/lanes.py);
# tests/vm/build-image.sh installs qemu & co. itself. The demo is the same harness with one guest.
test-vm: $(STAMP)
	$(IN_VENV) $(TIMED) vm python tests/vm/lanes.py

vm-prefetch:
	tests/vm/prefetch.sh --background

DEMO_SUITE ?= trixie
demo: $(STAMP)
	$(IN_VENV) python tests/vm/demo.py --suite $(DEMO_SUITE)

# bench/requirements.txt (matplotlib, for the plot) goes into .venv here only: it is
# not in requirements/, so the venv's stamp, and with it the test venv, stays as it is.
BENCH_ARGS ?=
bench: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(IN_VENV) $(TIMED) bench python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VENV_218) tests/output .pytest_cache .hypothesis
