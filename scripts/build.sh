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
# It must install cleanly into an empty collections path. --force: without it ansible-galaxy says
# "Nothing to do" when the configured collections path (.collections) already has the checkout, and
# the install path stays empty; so the installed files are checked, not the exit code.
install="$out/install"
.venv/bin/ansible-galaxy collection install --offline --no-deps --force -p "$install" "$artifact" >/dev/null 2>&1 || true
installed="$install/ansible_collections/hpcnet/infiniband"
for wanted in MANIFEST.json FILES.json meta/runtime.yml plugins/modules/ib_facts.py plugins/module_utils/_values.py; do
  [ -f "$installed/$wanted" ] || { echo "installed collection lacks $wanted (in $installed)" >&2; exit 1; }
done
if [ -d schemas ]; then
  for schema in schemas/*.json; do
    [ -f "$installed/$schema" ] || { echo "installed collection lacks $schema" >&2; exit 1; }
  done
fi
echo "built $(basename "$artifact"): $(wc -l <<<"$listing") entries, installs cleanly into $install"
