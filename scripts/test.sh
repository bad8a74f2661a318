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

# The machine's CPU time over the suite (every process, the lab's nodes included): whether the lanes are
# waiting or computing, which decides whether more lanes could help.
cpu_busy_idle() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }
read -r cpu_busy_start cpu_idle_start < <(cpu_busy_idle)
suite_start=$SECONDS

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
  local rc=0 scenario started times=()
  # The scenarios start at create (no destroy first): Molecule's state from a killed run ("created") would
  # make create skip, so it goes; create itself replaces a lab or container left behind.
  rm -rf "$ANSIBLE_HOME"/tmp/molecule.*
  for dir in molecule/*/; do
    scenario=$(basename "$dir")
    [ -f "$dir/molecule.yml" ] || continue
    printf -- '--- molecule scenario %s\n' "$scenario"
    started=$SECONDS
    (cd "$here" && molecule test -s "$scenario") || { echo "molecule scenario $scenario FAILED"; rc=1; }
    times+=("$scenario $((SECONDS - started))s")
  done
  # Where the lane's time goes, printed last so that it is in the tail of the log.
  printf 'molecule scenario times: %s\n' "${times[*]}"
  return $rc
}

cleanup_labs() {
  for d in /run/hpcnet-lab/*/; do
    [ -d "$d" ] || continue
    lab/labctl down --name "$(basename "$d")" >/dev/null 2>&1 || true
  done
}

# Two lanes run side by side (HPCNET_TEST_SERIAL=1 runs them one after the other): the unit tests, the
# static checks, the Molecule scenarios then integration tests in one, integration tests in the other (from
# the start: the unit tests are CPU work that fills the integration lane's waits), both from one queue.
# Part of a lab test's time is spent waiting (ssh, fabric sweeps, polls), so two lanes on two cores take
# less than the sum of the lanes; the summary's last line says how busy the machine was. Each lane logs to its own file, printed
# whole when it ends, so the output stays readable.
# The lanes' scratch (pytest's temporary trees) is on tmpfs when there is one: the unit tests alone write about
# 78,000 files (generated sysfs trees). On an ext4 /tmp that cost 20 s more system CPU and 13 s to delete.
scratch_root=/tmp
if [ -d /dev/shm ] && [ -w /dev/shm ]; then scratch_root=/dev/shm; fi
lane_dir=$(mktemp -d "$scratch_root/hpcnet-test-lanes.XXXXXX")

# The integration test modules, longest first (by the seconds per test module that the integration stages
# print at their end); a module not listed here goes last. Both lanes take the next module from this queue
# whenever they are free: the integration lane from the start, the other one after Molecule. So the lanes
# end together whatever Molecule took on the day (its time varies by a minute from run to run), and the
# short modules fill the end. Each module runs in its own pytest (0.5 s of CPU to start).
integration_by_length=(test_site_reboot test_sriov test_site_mixed test_site_all_profiles test_discovery
                       test_netcheck test_reboot test_ofed_mlnx_repo test_topology test_eipoib_ovs test_sm
                       test_firmware test_lab test_network test_mixed_node test_lab_faults test_lab_hw test_sm_rails)
integration_queue="$lane_dir/integration.queue"
{
  for module in "${integration_by_length[@]}"; do
    [ -f "tests/integration/$module.py" ] && echo "tests/integration/$module.py"
  done
  for path in tests/integration/test_*.py; do
    case " ${integration_by_length[*]} " in *" $(basename "$path" .py) "*) ;; *) echo "$path" ;; esac
  done
} > "$integration_queue"

# The next module of the queue (empty when there is none left); the lock makes take-and-remove atomic.
take_integration_module() {
  local fd module
  exec {fd}>"$integration_queue.lock"
  flock "$fd"
  module=$(head -n 1 "$integration_queue")
  [ -z "$module" ] || sed -i 1d "$integration_queue"
  exec {fd}>&-
  printf '%s' "$module"
}

# Integration test modules from the queue until it is empty; fails if any of them failed.
integration_from_queue() {
  local lane=$1 module rc=0 count=0
  while module=$(take_integration_module) && [ -n "$module" ]; do
    count=$((count + 1))
    pytest_stage -q -p no:cacheprovider --durations=5 --basetemp="$lane_dir/pytest-$lane-$count" "$module" || rc=1
  done
  echo "$lane: $count integration test modules"
  return $rc
}

lane_static_molecule() {
  run_stage unit pytest_stage -q -p no:cacheprovider --basetemp="$lane_dir/pytest-unit" tests/unit
  run_stage build bash scripts/build.sh
  run_stage sanity bash scripts/sanity.sh
  run_stage ansible-lint .venv/bin/ansible-lint --profile production --offline
  run_stage molecule molecule_all
  run_stage integration-lane1 integration_from_queue lane1
  printf '%s\n' "${report[@]}" > "$lane_dir/static.report"
  [ $stages_failed -eq 0 ]
}

lane_integration() {
  run_stage integration integration_from_queue lane2
  printf '%s\n' "${report[@]}" > "$lane_dir/integration.report"
  [ $stages_failed -eq 0 ]
}

# A lane counts its own stages (it runs in a subshell; its report file carries them back).
run_lane() {
  report=()
  stages_passed=0
  stages_failed=0
  "$@"
}

if [ "${HPCNET_TEST_SERIAL:-0}" = 1 ]; then
  (run_lane lane_static_molecule) >"$lane_dir/static.log" 2>&1
  cat "$lane_dir/static.log"
  (run_lane lane_integration) >"$lane_dir/integration.log" 2>&1
  cat "$lane_dir/integration.log"
else
  (run_lane lane_static_molecule) >"$lane_dir/static.log" 2>&1 &
  static_pid=$!
  (run_lane lane_integration) >"$lane_dir/integration.log" 2>&1 &
  integration_pid=$!
  wait $static_pid; wait $integration_pid
  printf '\n===== lane: unit, build, sanity, ansible-lint, molecule\n'; cat "$lane_dir/static.log"
  printf '\n===== lane: integration\n'; cat "$lane_dir/integration.log"
fi
# The lanes ran in subshells: their stage results come back through the report files.
for lane in static integration; do
  [ -f "$lane_dir/$lane.report" ] || { report+=("FAIL  lane $lane (no report)"); stages_failed=$((stages_failed + 1)); continue; }
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    report+=("$line")
    case $line in PASS*) stages_passed=$((stages_passed + 1)) ;; *) stages_failed=$((stages_failed + 1)) ;; esac
  done < "$lane_dir/$lane.report"
done
cleanup_labs
rm -rf "$lane_dir"
printf '\n===== summary\n'
printf '%s\n' "${report[@]}"
read -r cpu_busy_end cpu_idle_end < <(cpu_busy_idle)
awk -v b=$((cpu_busy_end - cpu_busy_start)) -v i=$((cpu_idle_end - cpu_idle_start)) -v hz="$(getconf CLK_TCK)" \
  -v wall=$((SECONDS - suite_start)) -v n="$(nproc)" \
  'BEGIN { printf "machine CPU over the suite: %.0f s busy, %.0f s idle (%.0f%% of %d cores) in %d s\n", b/hz, i/hz, (b+i) ? 100*b/(b+i) : 0, n, wall }'
echo "stages: ${stages_passed} passed, ${stages_failed} failed"
[ $stages_failed -eq 0 ]
