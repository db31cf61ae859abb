#!/usr/bin/env bash
# Runs the fuzz targets (see ROBUSTNESS.md).
#
#   tools/fuzz.sh run SECONDS [TARGET...]   fuzz each target for SECONDS, from the
#                                           committed corpus; new inputs go to
#                                           fuzz/work/TARGET (not committed)
#   tools/fuzz.sh replay [TARGET...]        run every committed input once
#   tools/fuzz.sh corpus [TARGET...]        rebuild the committed corpus from
#                                           fuzz/work and fuzz/corpus: a set cover
#                                           of their coverage, its 64 largest inputs
#
# A crash is copied to fuzz/regressions/TARGET/, which `cargo test` replays,
# and the script exits non-zero. Needs cargo-fuzz (`cargo install cargo-fuzz`);
# runs on stable Rust without a sanitizer (`-s none`).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

command="${1:-}"
shift || true
case "$command" in
  run) seconds="${1:?seconds}"; shift ;;
  replay | corpus) ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s none >/dev/null
binary() { echo "target/x86_64-unknown-linux-gnu/release/$1"; }

failed=0
for target in "${targets[@]}"; do
  mkdir -p "work/$target" "corpus/$target" "regressions/$target"
  case "$command" in
    run)
      log="$(mktemp)"
      if "$(binary "$target")" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        -artifact_prefix="work/$target-" "work/$target" "corpus/$target" >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        echo "$target: $runs executions in ${seconds} s, no failure"
      else
        failed=1
        echo "$target: FAILED"
        grep -A12 -m1 -E 'panicked|ERROR: libFuzzer' "$log" || tail -n 20 "$log"
        for crash in work/"$target"-*; do
          [ -e "$crash" ] || continue
          mv "$crash" "regressions/$target/$(basename "$crash" | sed "s/^$target-//")"
          echo "  saved as fuzz/regressions/$target/$(basename "$crash" | sed "s/^$target-//")"
        done
      fi
      rm -f "$log"
      ;;
    replay)
      if "$(binary "$target")" -runs=0 "corpus/$target" "regressions/$target" >/dev/null 2>&1; then
        echo "$target: $(find "corpus/$target" "regressions/$target" -type f | wc -l) inputs hold"
      else
        failed=1
        echo "$target: an input FAILED (run: cargo fuzz run -s none $target fuzz/corpus/$target fuzz/regressions/$target -- -runs=0)"
      fi
      ;;
    corpus)
      merged="$(mktemp -d)"
      "$(binary "$target")" -set_cover_merge=1 "$merged" "work/$target" "corpus/$target" >/dev/null 2>&1
      rm -f corpus/"$target"/*
      mapfile -t largest < <(ls -S "$merged" | head -n 64)
      for file in "${largest[@]}"; do cp "$merged/$file" "corpus/$target/"; done
      rm -rf "$merged"
      echo "$target: $(ls "corpus/$target" | wc -l) inputs committed"
      ;;
  esac
done
exit "$failed"
