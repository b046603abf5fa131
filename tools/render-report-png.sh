#!/usr/bin/env bash
# Render one host's IOMMU report page (plugins/plugin_utils/_report_html.py) to a PNG
# with headless Chromium, the picture in README.md. Not part of `make test`.
#
# Usage: tools/render-report-png.sh [OUTPUT.png] [HOST]
#   OUTPUT  default docs/report.png
#   HOST    a canned machine of tests/unit/sysfs_builder.py (default intel_gpu_host,
#           the GPU of README's pve1) or a capture under tests/fixtures/real (bookworm-intel-after, ...)
# Installs Debian's chromium with apt-get when it is missing (root). The page is
# opened from a file:// URL with every Chromium network feature off; the page
# itself loads nothing (its Content-Security-Policy forbids it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(dirname "$here")
output=${1:-$root/docs/report.png}
host=${2:-intel_gpu_host}
python=${PYTHON:-$root/.venv/bin/python}
[[ -x $python ]] || python=python3

if ! command -v chromium >/dev/null; then
    echo "render-report-png: installing chromium (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" - "$root" "$host" "$work" <<'PY'
import sys
import tarfile
from pathlib import Path

root, host, work = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
sys.path.insert(0, str(root / 'tests' / 'unit'))
import conftest  # noqa: F401,E402  (makes the checkout importable as ansible_collections.vfio.passthrough)
from module_runner import run_module  # noqa: E402
from sysfs_builder import CANNED_HOSTS  # noqa: E402

from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_html import render_html  # noqa: E402
from ansible_collections.vfio.passthrough.plugins.modules import iommu_facts  # noqa: E402

tree = work / 'tree'
capture = root / 'tests' / 'fixtures' / 'real' / host / 'sysfs.tar.gz'
if host in CANNED_HOSTS:
    CANNED_HOSTS[host](tree)
elif capture.is_file():
    tree.mkdir()
    with tarfile.open(capture) as tar:
        tar.extractall(tree, filter='tar')
else:
    sys.exit('render-report-png: unknown host %r: not in sysfs_builder.CANNED_HOSTS (%s) nor under %s'
             % (host, ', '.join(sorted(CANNED_HOSTS)), capture.parent.parent))
result = run_module(iommu_facts.main, {'root': str(tree)})
if result.get('failed'):
    sys.exit('render-report-png: iommu_facts failed: %s' % result.get('msg'))
(work / 'iommu.html').write_text(render_html(result['ansible_facts']['iommu'], 'pve1'), encoding='utf-8')
PY

mkdir -p "$(dirname "$output")"
# Under load headless Chromium can shoot before every tile is painted (grey patches):
# the virtual time budget and running all compositor stages first make it wait.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-extensions --hide-scrollbars --force-device-scale-factor=1 \
    --run-all-compositor-stages-before-draw \
    --user-data-dir="$work/profile" --virtual-time-budget=2000 \
    --screenshot="$work/shot.png" --window-size=1280,900 "file://$work/iommu.html" \
    >"$work/chromium.log" 2>&1 || { cat "$work/chromium.log" >&2; exit 1; }
[[ -s $work/shot.png ]] || { echo "render-report-png: chromium wrote no screenshot" >&2; cat "$work/chromium.log" >&2; exit 1; }
mv "$work/shot.png" "$output"
echo "render-report-png: $output ($(stat -c %s "$output") bytes) from $host"
