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
# The checks below depend on $(VENV_DEPS): the venv's stamp here; tests/controller/run.sh runs
# the same targets inside a Debian 13 root with VENV pointing at that line's venv and no stamp.
VENV_DEPS ?= $(STAMP)
# Appended to each check's label in the log ("units@2.21"): which ansible-core line it ran on.
CHECK_TAG ?=
# The Debian 13 (Python 3.13) control node: each ansible-core line and the checks it runs there.
# Adding a line is one entry here plus its requirements file (tests/controller/run.sh says where).
CONTROLLER_LINES := \
	2.21=units,test-playbooks,sanity,lint,package \
	2.20=units,sanity,package \
	apt=units,sanity,package
# Run a command with the venv first on PATH (no global export: $(PYTHON) must
# keep naming the interpreter the venv is built from).
IN_VENV := PATH="$(abspath $(VENV))/bin:$$PATH" VIRTUAL_ENV="$(abspath $(VENV))"
TIMED := tools/timed.sh
# CI logs are files: no terminal colour codes in them.
ifdef CI
export NO_COLOR := 1
export ANSIBLE_NOCOLOR := 1
endif

.PHONY: help venv vm-prefetch vm-prefetch-full test test-full test-fast test-controller test-molecule test-molecule-full test-vm test-vm-full demo bench units test-playbooks sanity lint docs package clean

help:
	@echo 'make demo       boot a local Debian 13 VM with an emulated Intel IOMMU and run the role against it (DEMO_SUITE=bookworm: Debian 12)'
	@echo 'make bench      benchmark against the guide'"'"'s playbooks -> bench/results.md (root, ~50 min quiet; BENCH_ARGS=--quick)'
	@echo 'make test       test-fast + test-controller + test-molecule + test-vm: the set CI runs (within 70 min on a fresh clone)'
	@echo 'make test-full  the same with test-vm-full: every VM scenario, Debian 12 guests and slow proofs included'
	@echo 'make test-fast  units + playbook tests + ansible-test sanity + ansible-lint + ansible-doc of every module + package'
	@echo 'make test-molecule  molecule container scenarios (tests/containers/molecule.sh; root, podman)'
	@echo 'make test-molecule-full  the same with the slow cases (MOLECULE_FULL=1: the cluster scenario'"'"'s five-node and QDevice cases)'
	@echo 'make test-vm    real-kernel scenarios in QEMU guests, the make test set (root; builds the VM images once)'
	@echo 'make test-vm-full  every real-kernel scenario (the make test-full set)'
	@echo 'make units      pytest tests/unit'
	@echo 'make test-playbooks  pytest tests/playbooks: the real ansible and ansible-playbook on the playbooks'
	@echo 'make sanity     ansible-test sanity (tools/sanity.sh)'
	@echo 'make lint       ansible-lint --profile production'
	@echo 'make docs       ansible-doc renders for every module'
	@echo 'make package    galaxy build+install, ansible-builder create, antsibull-changelog (tests/packaging)'
	@echo 'make test-controller  units, sanity, package (and on 2.21 playbooks and lint) on a Debian 13 root with Python 3.13: ansible-core 2.21, 2.20 and Debian'"'"'s apt 2.19 (root)'
	@echo 'make venv       (re)build .venv from requirements/*.txt'
	@echo 'make clean      remove .venv and test output'

# vm-prefetch starts the VM image builds in the background first: they overlap the
# single-threaded stages instead of adding to the wall time (measured in the README).
test: vm-prefetch test-fast test-controller test-molecule test-vm

test-full: vm-prefetch-full test-fast test-controller test-molecule-full test-vm-full

test-fast: units test-playbooks sanity lint docs package

venv: $(STAMP)

$(STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	rm -rf $(VENV)
	$(TIMED) venv bash -c '$(PYTHON) -m venv $(VENV) && $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))'
	touch $@

units: $(VENV_DEPS)
	$(IN_VENV) $(TIMED) units$(CHECK_TAG) python -m pytest

test-playbooks: $(VENV_DEPS)
	$(IN_VENV) $(TIMED) test-playbooks$(CHECK_TAG) python -m pytest tests/playbooks

sanity: $(VENV_DEPS)
	$(IN_VENV) $(TIMED) sanity$(CHECK_TAG) tools/sanity.sh

# The playbooks and role call vfio.passthrough.* by FQCN: ansible-lint's
# syntax check resolves them through the collection link.
lint: $(VENV_DEPS)
	$(IN_VENV) ANSIBLE_COLLECTIONS_PATH="$$(tools/collection-link.sh --collections-path)" \
		$(TIMED) lint$(CHECK_TAG) ansible-lint --profile production

docs: $(VENV_DEPS)
	$(IN_VENV) $(TIMED) docs$(CHECK_TAG) tools/check-docs.sh

# The tarball ansible-galaxy builds, installed into an empty collections path
# (ansible-doc of every module, the report playbook in check mode),
# `ansible-builder create` of execution-environment.yml, and
# `antsibull-changelog lint` plus a CHANGELOG.md regenerated in a temp copy.
# Writes only under the temp directory, never into the checkout.
package: $(VENV_DEPS)
	$(IN_VENV) $(TIMED) package$(CHECK_TAG) python -m pytest -p no:cacheprovider tests/packaging

# Builds (once, cached) the Debian 13 root and each line's venv in it, then runs the line's checks
# above inside it on this checkout.
test-controller:
	$(TIMED) controller tests/controller/run.sh $(CONTROLLER_LINES)

# tests/containers/molecule.sh installs podman & co. itself and reuses .venv.
test-molecule: $(STAMP)
	$(IN_VENV) $(TIMED) molecule tests/containers/molecule.sh

test-molecule-full: $(STAMP)
	$(IN_VENV) MOLECULE_FULL=1 $(TIMED) molecule-full tests/containers/molecule.sh

# QEMU guests with an emulated IOMMU, two at a time (tests/vm/lanes.py: --set make-test or full
# says which scenarios); tests/vm/build-image.sh installs qemu & co. itself. The demo is the same
# harness with one guest.
test-vm: $(STAMP)
	$(IN_VENV) $(TIMED) vm python tests/vm/lanes.py --set make-test

test-vm-full: $(STAMP)
	$(IN_VENV) $(TIMED) vm-full python tests/vm/lanes.py --set full

vm-prefetch:
	tests/vm/prefetch.sh --background --set make-test

vm-prefetch-full:
	tests/vm/prefetch.sh --background --set full

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
	rm -rf $(VENV) tests/output .pytest_cache .hypothesis
