#!/usr/bin/env bash
# Build the collection artifact and check what it contains: the plugins, roles, playbooks and docs,
# never the checkout-only parts (library/ symlinks, lab/, scripts/, CI files).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${BUILD_OUTPUT:-/tmp/hpcnet-build}
rm -rf "$out" && mkdir -p "$out"
cd "$here"
.venv/bin/ansible-galaxy collection build --force --output-path "$out" . >/dev/null
artifact=$(ls "$out"/hpcnet-infiniband-*.tar.gz)
listing=$(tar -tzf "$artifact")
for forbidden in library/ lab/ scripts/ .ci/ .venv/ .collections/; do
  if grep -q "^${forbidden}" <<<"$listing"; then echo "artifact contains $forbidden" >&2; exit 1; fi
done
for wanted in MANIFEST.json plugins/modules/ plugins/module_utils/_host.py meta/runtime.yml; do
  grep -q "^${wanted}" <<<"$listing" || { echo "artifact lacks $wanted" >&2; exit 1; }
done
# It must install cleanly into an empty collections path.
.venv/bin/ansible-galaxy collection install --offline --no-deps -p "$out/install" "$artifact" >/dev/null 2>&1
echo "built $(basename "$artifact"): $(wc -l <<<"$listing") entries, installs cleanly"
