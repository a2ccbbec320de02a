#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the checks that must fail a test when they are removed.
#
#   pip install mutmut                     # not in the test extra: CI does not run this
#   scripts/mutation.sh verify             # the verifier, on tests/unit/test_verify_checks.py (+ mutants tests)
#   scripts/mutation.sh scan               # the pickle scanner's opcode walker, on the fast scan tests
#   scripts/mutation.sh step               # the step primitive, on tests/unit/test_step_primitive.py
#   scripts/mutation.sh registry           # the local registry, on tests/unit/test_registry_local.py
#   scripts/mutation.sh registry-vertex    # the Vertex AI registry: generate its mutants, then
#   scripts/mutation.sh registry-vertex sample 40   # run 40 of them one by one (see below)
#   scripts/mutation.sh verify results     # any mutmut command after the target: results, show NAME, browse
#
# Too slow for CI (verify: 25 minutes on two cores, ~1500 mutants): run it by hand after changing a check, and
# update the "Mutation testing" section of tests/README.md (score and every surviving mutant).
#
# The package lives at sdk/chainproof but is imported as chainproof, and mutmut only puts
# mutants/, mutants/src and mutants/source on sys.path. So each target gets a staging folder
# .mutation/TARGET/ (git-ignored) with src -> ../../sdk, tests -> ../../tests, docs -> ../../docs
# and a pyproject.toml made of the repository's own plus the target's [tool.mutmut] section
# below; mutmut copies that into .mutation/TARGET/mutants/ and runs pytest there (serially,
# -n 0, in forked children). The state survives between runs: a second run only retests what
# changed. `rm -rf .mutation` starts over.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MUTMUT=${MUTMUT:-$ROOT/.venv/bin/mutmut}
[ -x "$MUTMUT" ] || MUTMUT=$(command -v mutmut) || { echo "mutmut is not installed: pip install mutmut" >&2; exit 2; }

TARGET=${1:?usage: scripts/mutation.sh verify|scan|step|registry|registry-vertex [mutmut command ...]}
shift
case "$TARGET" in
  verify)
    ONLY='["src/chainproof/verify/*"]'
    TESTS='["tests/unit/test_verify_checks.py", "tests/unit/test_verify_mutants.py"]'
    ;;
  scan)
    # The opcode walker and its stream; the file-type dispatch, archives and report formats
    # are left out (their tests are slower and the walker is where a removed check hides).
    ONLY='["src/chainproof/scan/pickles.py", "src/chainproof/scan/_stream.py"]'
    # Fast tests only. The three tests on test_scan_pickles.py's benign_folder fixture (and
    # test_scan_malformed.py's benign corpus) train sklearn models, 5-9 s per pytest run, that
    # is per surviving mutant: they are left out, and test_scan_mutants.py's benign streams of
    # every protocol stand in for them. The oracle's fuzzer runs 30 examples instead of 300.
    TESTS='["tests/unit/test_scan_pickles.py", "tests/unit/test_scan_differentials.py",
           "tests/unit/test_scan_oracle.py", "tests/unit/test_scan_mutants.py",
           "--deselect", "tests/unit/test_scan_pickles.py::test_accepts_every_benign_model_and_data_file",
           "--deselect", "tests/unit/test_scan_pickles.py::test_joblib_arrays_are_skipped_not_parsed",
           "--deselect", "tests/unit/test_scan_pickles.py::test_benign_model_is_refused_without_its_classes_in_the_allowlist"]'
    export CHAINPROOF_SCAN_FUZZ_EXAMPLES=${CHAINPROOF_SCAN_FUZZ_EXAMPLES:-30}
    ;;
  step)
    # The step primitive on its own two-step layout (no pipeline, no simulator).
    ONLY='["src/chainproof/step.py"]'
    TESTS='["tests/unit/test_step_primitive.py"]'
    ;;
  registry)
    # The local registry and the registry seam's records.
    ONLY='["src/chainproof/registry/local.py", "src/chainproof/registry/_protocol.py"]'
    TESTS='["tests/unit/test_registry_local.py"]'
    ;;
  registry-vertex)
    # The Vertex AI registry, against the loopback Vertex and Cloud Storage servers. mutmut's own
    # run reports every mutant of this target killed, also those that survive when run alone
    # (its forked workers and the in-process gRPC servers do not mix): use it to generate the
    # mutants, then `scripts/mutation.sh registry-vertex sample N`, which runs N of them one by
    # one in fresh processes.
    ONLY='["src/chainproof/registry/vertex.py"]'
    TESTS='["tests/integration/test_vertex_registry.py"]'
    ;;
  *)
    echo "unknown target $TARGET (verify, scan, step, registry, registry-vertex)" >&2
    exit 2
    ;;
esac

STAGE=$ROOT/.mutation/$TARGET
mkdir -p "$STAGE"
for link in src:sdk tests:tests docs:docs; do
  ln -sfn "../../${link#*:}" "$STAGE/${link%%:*}"
done
{
  cat "$ROOT/pyproject.toml"
  cat <<EOF

[tool.mutmut]
source_paths = ["src/chainproof"]
only_mutate = $ONLY
also_copy = ["docs"]
pytest_add_cli_args = ["-n", "0", "-p", "no:cacheprovider"]
pytest_add_cli_args_test_selection = $TESTS
use_git_change_detection = false
EOF
} > "$STAGE/pyproject.toml.new"
# Keep the file (and mutmut's cached results) when the configuration did not change.
if cmp -s "$STAGE/pyproject.toml.new" "$STAGE/pyproject.toml"; then
  rm "$STAGE/pyproject.toml.new"
else
  mv "$STAGE/pyproject.toml.new" "$STAGE/pyproject.toml"
fi

if [ $# -eq 0 ]; then
  set -- run
fi
if [ "$1" = sample ]; then
  # N mutants drawn with a fixed seed, each run alone (a fresh pytest process, the mutant chosen
  # by MUTANT_UNDER_TEST, the mutated copy first on sys.path); needs an earlier `run`.
  N=${2:-40}
  [ -d "$STAGE/mutants/src" ] || { echo "no mutants yet: scripts/mutation.sh $TARGET run first" >&2; exit 2; }
  mapfile -t tests < <(python3 -c "import json,sys; print('\n'.join(t for t in json.loads(sys.argv[1]) if t.endswith('.py')))" "$TESTS")
  cd "$STAGE"
  names=$("$MUTMUT" results --all true | grep -o 'chainproof\.[^:]*' | shuf --random-source=<(yes 20261204) | head -n "$N" || true)
  # mutmut copied the tests when it generated the mutants: bring that copy up to date.
  cp -r "$ROOT/tests/." "$STAGE/mutants/tests/"
  cd "$STAGE/mutants"
  killed=0 total=0
  for name in $names; do
    total=$((total + 1))
    if PYTHONPATH=src MUTANT_UNDER_TEST=$name "$(dirname "$MUTMUT")/python" -m pytest -x -q -n 0 -p no:cacheprovider \
         "${tests[@]}" >/dev/null 2>&1; then
      echo "$name: survived"
    else
      echo "$name: killed"; killed=$((killed + 1))
    fi
  done
  echo "sampled $total mutants: $killed killed, $((total - killed)) survived"
  exit 0
fi
if [ "$TARGET" = verify ] && [ "$1" = run ]; then
  # The verifier's tests run on the chain simulator: build it once per mutmut worker with the
  # unmutated code (tests/simulated_chain.py), not under each of ~1500 mutants.
  rm -rf "$STAGE/chains"
  "$(dirname "$MUTMUT")/python" -m tests.simulated_chain "$STAGE/chains" "$(( ${MUTMUT_CHILDREN:-$(nproc)} + 2 ))"
  export CHAINPROOF_SIMULATED_CHAINS=$STAGE/chains
fi
cd "$STAGE"
if [ "$1" = run ] && [ -n "${MUTMUT_CHILDREN:-}" ]; then
  shift
  set -- run --max-children "$MUTMUT_CHILDREN" "$@"
fi
exec "$MUTMUT" "$@"
