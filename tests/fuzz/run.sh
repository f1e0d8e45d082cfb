#!/usr/bin/env bash
# Runs each fuzz target for a bounded time and prints its execution count.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      default: 20 s, every target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The toolchain is stable:
# RUSTC_BOOTSTRAP=1 lets it take the nightly-only flags cargo-fuzz passes
# (-Zsanitizer=address). FUZZ_SANITIZER=none builds without AddressSanitizer
# where its runtime is missing. Each target starts from seeds/<target>
# (committed) and corpus/<target> (what earlier runs found; not committed).
# A crash leaves its input in artifacts/<target>/ and fails the script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(channel_frame csr evidence run_certificate policy upload)
fi
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

cargo fuzz build --fuzz-dir "$here" --sanitizer "$sanitizer"
# The binaries themselves, not `cargo fuzz run`, which would rebuild before
# each target whenever a source changed meanwhile.
bin_dir="$here/target/$(rustc -vV | sed -n 's/^host: //p')/release"
summary=()
for target in "${targets[@]}"; do
  mkdir -p "$here/corpus/$target" "$here/artifacts/$target"
  log="$(mktemp)"
  # -rss_limit_mb: a leak or an unbounded allocation is a finding.
  if ! "$bin_dir/$target" "$here/corpus/$target" "$here/seeds/$target" \
      -artifact_prefix="$here/artifacts/$target/" \
      -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
      >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $target FAILED (input in $here/artifacts/$target/)" >&2
    rm -f "$log"
    exit 1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)"
  summary+=("$(printf '%-16s %12s executions in %s s, coverage %s edges, corpus %s files' \
    "$target" "$runs" "$seconds" "${cov:-?}" "$(ls "$here/corpus/$target" | wc -l)")")
  rm -f "$log"
done
echo "fuzzing ($sanitizer sanitizer):"
printf '  %s\n' "${summary[@]}"
