#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) and prints one summary line per target:
# executions, coverage, crashes. Needs the nightly toolchain and `cargo install cargo-fuzz`.
#
#   fuzz/run-all.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Seed the Redfish corpus from the recorded trees (not checked in: they keep their
# licences in shared/fixtures/redfish/LICENSES).
fixtures="../../shared/fixtures/redfish"
if [ -d "$fixtures" ] && [ ! -e corpus/redfish_models/.seeded ]; then
    mkdir -p corpus/redfish_models
    # (a process substitution, so find's SIGPIPE from head does not trip pipefail)
    mapfile -t seeds < <(find "$fixtures" -name index.json -size -16k | sort | head -n 400)
    for f in "${seeds[@]}"; do
        cp "$f" "corpus/redfish_models/$(echo "$f" | md5sum | cut -c1-16)"
    done
    touch corpus/redfish_models/.seeded
fi

# Seed the IPMI corpus from the recorded RMCP+ datagrams.
ipmi="../../shared/fixtures/ipmi"
if [ -d "$ipmi" ] && [ ! -e corpus/ipmi_packets/.seeded ]; then
    mkdir -p corpus/ipmi_packets
    python3 - "$ipmi" corpus/ipmi_packets <<'PY'
import glob, hashlib, os, sys
src, dst = sys.argv[1], sys.argv[2]
for path in glob.glob(os.path.join(src, "*", "*.txt")):
    for line in open(path):
        if line.startswith(("request: ", "response: ")):
            data = bytes.fromhex(line.split(": ", 1)[1].strip())
            with open(os.path.join(dst, hashlib.md5(data).hexdigest()[:16]), "wb") as f:
                f.write(data)
PY
    touch corpus/ipmi_packets/.seeded
fi

cargo +nightly fuzz build >/dev/null 2>&1 || { echo "fuzz build failed: run cargo +nightly fuzz build" >&2; exit 1; }
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" logs
    log="logs/$t.log"
    set +e
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | awk '{print $2}')
    crashes=$(ls "artifacts/$t" 2>/dev/null | grep -c -E '^(crash|leak|timeout|oom)-' || true)
    summary+=("$(printf '%-16s %6ss  executions %-12s coverage %-6s crashes %s (exit %s)' \
        "$t" "$secs" "${execs:-?}" "${cov:-?}" "$crashes" "$rc")")
done
printf '%s\n' "${summary[@]}"
