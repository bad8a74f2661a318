#!/usr/bin/env bash
# ansible-test sanity needs the collection at .../ansible_collections/hpcnet/infiniband: copy the
# checkout there (tracked and untracked-but-not-ignored files; a copy, never a symlink) and run it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${SANITY_WORKDIR:-/tmp/hpcnet-sanity}
dest="$work/ansible_collections/hpcnet/infiniband"
rm -rf "$work"
mkdir -p "$dest"
cd "$here"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  mkdir -p "$dest/$(dirname "$f")"
  cp -P "$f" "$dest/$f"
done
cd "$dest"
# ansible-test lists files with git: give the copy its own throw-away repository.
git init -q . && git add -A >/dev/null && git -c user.email=ci@localhost -c user.name=ci commit -qm sanity
export ANSIBLE_HOME="$work/.ansible"
# ansible-test bootstraps pip in its venvs with a script it downloads from a host this machine cannot
# reach; give it an equivalent local script that installs the same pip wheel from PyPI.
pip_version=$("$here/.venv/bin/python" -c 'from ansible_test._internal.python_requirements import PIP_VERSION as v; print(v)' 2>/dev/null || echo 24.2)
cache="$HOME/.ansible/test/cache"
bootstrap="$cache/get_pip_${pip_version//./_}.py"
if [ ! -f "$bootstrap" ]; then
  mkdir -p "$cache"
  "$here/.venv/bin/pip" download -q --disable-pip-version-check --no-deps "pip==$pip_version" -d "$cache" 2>&1 | grep -v '^WARNING: Location' || true
  cat > "$bootstrap" <<PYEOF
# Local stand-in for get-pip.py: installs pip $pip_version from the wheel beside this file.
import glob, os, sys
wheel = glob.glob(os.path.join("$cache", "pip-$pip_version-*.whl"))[0]
sys.path.insert(0, wheel)
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
extra = [] if "--no-setuptools" in sys.argv else ["setuptools"]
extra += [] if "--no-wheel" in sys.argv else ["wheel"]
sys.exit(main(["install", "--upgrade", "--force-reinstall", wheel] + args + extra))
PYEOF
fi
# openvswitch.openvswitch etc. for imports in our plugins' docs fragments (none today) come from here.
export ANSIBLE_COLLECTIONS_PATH="$work:$here/.collections"
"$here/.venv/bin/ansible-test" sanity --python 3.11 --color no "$@"
