# Sourced by the scripts that build on a finished demo run (experiments.sh, grpo_experiments.sh, grpo_select.sh,
# grpo_verifier_select.sh, grpo_verifier_seeds.sh, direct_experiments.sh, direct_sweep.sh), after they set DEMO and OUT:
#   from_demo SUBDIR...   each DEMO/SUBDIR must exist (else: not a finished demo), OUT must not (never overwrite);
#                         then creates OUT, sets DATA=DEMO/data and starts the clock of stage()
#   stage TEXT            a progress line with the seconds since from_demo
#   read_seeds            seeds=(the words of $SEEDS, default 1337 1338 1339); fewer than two: an error, exit 2
from_demo() {
  local d
  for d in "$@"; do
    [ -d "$DEMO/$d" ] || { echo "error: $DEMO/$d not found: DEMO_DIR must be a finished run of scripts/demo.sh" >&2; exit 2; }
  done
  if [ -e "$OUT" ]; then echo "error: $OUT already exists; pass another directory" >&2; exit 2; fi
  mkdir -p "$OUT"
  DATA="$DEMO/data"
  t0=$(date +%s)
}
stage() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }
read_seeds() {
  read -r -a seeds <<< "${SEEDS:-1337 1338 1339}"
  [ "${#seeds[@]}" -ge 2 ] || { echo "error: SEEDS needs two or more seeds (one seed has no spread)" >&2; exit 2; }
}
