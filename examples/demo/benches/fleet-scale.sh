#!/usr/bin/env bash
# The whole Metal3 workflow on simulated fleets of growing size: metal3-demo with instant
# power transitions and the simulated fleet (BMCs, image server, agents) in processes of
# its own, so that the operator+conductor process is measured alone.
#
# usage: examples/demo/benches/fleet-scale.sh [HOSTS...]   (default: 1000 10000)
#
# Prints, per fleet size, metal3-demo's summary: time from the manifests applied to every
# host provisioned, the whole run, BMC requests per host, and the peak resident memory of
# the operator+conductor process and of the fleet processes. Exits non-zero if any host
# did not end where it should. Needs 20,000 open files per process (ulimit -n) for 10,000
# hosts: the simulator starts one fleet process per 2,500 hosts.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
cargo build --quiet --release -p metal3-demo --bin metal3-demo
echo "$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; open files $(ulimit -n)"
failed=0
# A run must not start while the previous one's processes are still going down or its
# sockets are in TIME_WAIT: either slows the fleet's start-up by seconds.
settle() {
    local waited=0
    while { pgrep -x metal3-demo >/dev/null ||
            [ "$(ss -tan state time-wait 2>/dev/null | wc -l)" -gt 1000 ]; } &&
          [ "$waited" -lt 120 ]; do
        sleep 2
        waited=$((waited + 2))
    done
}
for n in "${sizes[@]}"; do
    settle
    echo "== $n hosts"
    out=$(mktemp)
    if target/release/metal3-demo --hosts "$n" --power-delay-ms 0 --separate-simulator \
        --quiet --timeout 900 > "$out"; then
        status=ok
    else
        status="FAILED (see $out)"
        failed=1
    fi
    grep -E '^[0-9]+ hosts:|^peak memory:' "$out"
    echo "result: $status"
    [ "$status" = ok ] && rm -f "$out"
done
exit "$failed"
