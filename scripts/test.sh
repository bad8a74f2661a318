#!/usr/bin/env bash
# The whole test suite (README command 2; .ci/run calls exactly this):
#   unit tests (pytest), ansible-test sanity (from a copy at .../ansible_collections/hpcnet/infiniband),
#   ansible-lint (production profile), integration tests on the lab (pytest, root), Molecule scenarios.
# Every stage runs even when an earlier one failed; the exit code is non-zero if any stage failed.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
export ANSIBLE_HOME="$here/.ansible"
export ANSIBLE_COLLECTIONS_PATH="$here/.collections"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1
export PATH="$here/.venv/bin:$PATH"

bash scripts/setup.sh || { echo "setup failed"; exit 1; }

stages_passed=0
stages_failed=0
failed_names=()
report=()

run_stage() {
  local name=$1; shift
  local start=$SECONDS rc
  printf '\n===== stage %s: %s\n' "$name" "$*"
  "$@"
  rc=$?
  local took=$((SECONDS - start))
  if [ $rc -eq 0 ]; then
    stages_passed=$((stages_passed + 1)); report+=("PASS  $name (${took}s)")
  else
    stages_failed=$((stages_failed + 1)); failed_names+=("$name"); report+=("FAIL  $name (${took}s, rc=$rc)")
  fi
}

# pytest exits 5 when it collected nothing: for us that is a broken suite, never a pass.
pytest_stage() {
  .venv/bin/python -m pytest "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then echo "pytest collected no tests in $*: treating as a failure"; return 1; fi
  return $rc
}

molecule_all() {
  local rc=0 scenario
  for dir in molecule/*/; do
    scenario=$(basename "$dir")
    [ -f "$dir/molecule.yml" ] || continue
    printf -- '--- molecule scenario %s\n' "$scenario"
    (cd "$here" && molecule test -s "$scenario") || { echo "molecule scenario $scenario FAILED"; rc=1; }
  done
  return $rc
}

cleanup_labs() {
  for d in /run/hpcnet-lab/*/; do
    [ -d "$d" ] || continue
    lab/labctl down --name "$(basename "$d")" >/dev/null 2>&1 || true
  done
}

run_stage unit pytest_stage -q tests/unit
run_stage build bash scripts/build.sh
run_stage sanity bash scripts/sanity.sh
run_stage ansible-lint .venv/bin/ansible-lint --profile production --offline
run_stage integration pytest_stage -q -p no:cacheprovider tests/integration
run_stage molecule molecule_all
cleanup_labs

printf '\n===== summary\n'
printf '%s\n' "${report[@]}"
echo "stages: ${stages_passed} passed, ${stages_failed} failed"
[ $stages_failed -eq 0 ]
