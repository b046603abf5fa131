#!/usr/bin/env bash
# Run `ansible-test sanity` on this checkout, offline except for PyPI.
#
# Usage: tools/sanity.sh [extra ansible-test sanity arguments]
# Needs ansible-test (ansible-core) on PATH: `make sanity` provides it from .venv.
#
# What is tested: ansible-test lists files with
# `git ls-files --cached --others --exclude-standard`, so it sees the working
# tree as it is (committed, modified and untracked-but-not-ignored files alike),
# not only the committed state.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
python=${PYTHON:-python3}
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
link=$(PYTHON="$python" "$here/collection-link.sh")

# ansible-test builds one virtualenv per sanity test and puts pip into each one
# with get-pip.py, downloaded from ci-files.testing.ansible.com, which this
# network does not reach. ansible-test reads the script from its cache first
# (~/.ansible/test/cache/get_pip_<version>.py, "can be manually downloaded and
# saved" says its error), so we put there an equivalent bootstrap: the same
# pip version, as the wheel from PyPI, run from the wheel the way get-pip.py
# runs its embedded copy.
pip_version=$("$python" - <<'PY'
from types import SimpleNamespace
import sys

from ansible_test._internal.python_requirements import get_venv_packages

print(get_venv_packages(SimpleNamespace(version='%d.%d' % sys.version_info[:2]))['pip'])
PY
)
cache=$HOME/.ansible/test/cache
shim=$cache/get_pip_${pip_version//./_}.py
wheel=$cache/pip-${pip_version}-py3-none-any.whl
if [[ ! -f $wheel ]]; then
    mkdir -p "$cache"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$cache" "pip==$pip_version"
fi
if [[ ! -f $shim ]] || ! grep -q 'vfio.passthrough' "$shim"; then
    cat >"$shim.tmp" <<PY
# pip bootstrap for ansible-test, written by vfio.passthrough tools/sanity.sh.
# Behaves like get-pip.py: installs pip from an embedded copy with the given
# pip-install arguments; --no-setuptools/--no-wheel are get-pip options.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '${wheel##*/}'))
from pip._internal.cli.main import main  # noqa: E402

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
sys.exit(main(['install', '--upgrade', '--force-reinstall'] + args))
PY
    mv "$shim.tmp" "$shim"
fi

# Tests that cannot run here, each with the reason printed in the log.
skips=()
skip() {
    echo "sanity: skipping $1: $2"
    skips+=(--skip-test "$1")
}
if ! command -v shellcheck >/dev/null; then
    # .ci/run installs it, so in CI its absence is an error, not a skip.
    if [[ -n ${CI:-} ]]; then
        echo 'sanity: shellcheck is not installed (apt-get install shellcheck)' >&2
        exit 1
    fi
    skip shellcheck 'shellcheck is not installed (apt-get install shellcheck)'
fi

cd "$link"
# os.getcwd() resolves the symlink, so ansible-test would not see the
# ansible_collections/ parent: tell it the content root explicitly.
export ANSIBLE_TEST_CONTENT_ROOT=$link
exec ansible-test sanity --local --python "$pyver" --color no "${skips[@]}" "$@"
