#!/usr/bin/env bash
# RedfishDriver beside sushy (the Python client Ironic uses, pinned below) against one
# sushy-emulator, in one run: HTTP requests and client CPU for the cold virtual-media
# boot (discover, insert, boot once from CD, power on) and for a power poll.
#
# usage: bmc-redfish/benches/vs-sushy.sh [ROUNDS]   (default 3; the two clients
#        alternate, each round runs SUSHY_BENCH_FLOWS cold flows and SUSHY_BENCH_POLLS
#        polls per client; the medians are printed)
#
# The same flows also run against bmc-sim, a server that keeps connections open:
# sushy-emulator closes every connection, so there each request costs both clients a new
# TCP connection.
#
# Needs python3 (with venv) and curl; starts the emulator from shared/peers on a free
# loopback port and stops it at the end. Work files: target/vs-sushy/.
set -euo pipefail

SUSHY_VERSION=5.14.0
rounds=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=${SHARED_PEERS:-$root/../shared/peers}
work=$root/target/vs-sushy
mkdir -p "$work/images"
cd "$root"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The client: sushy in a venv of its own.
if ! "$work/client/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('sushy') != '$SUSHY_VERSION')" 2>/dev/null; then
    python3 -m venv "$work/client"
    "$work/client/bin/pip" install --quiet "sushy==$SUSHY_VERSION"
fi

# The image the flows insert, served on loopback.
head -c 65536 /dev/zero > "$work/images/boot.iso"
image_port=$(free_port)
python3 -m http.server "$image_port" --bind 127.0.0.1 --directory "$work/images" > "$work/images.log" 2>&1 &
image_pid=$!

export SUSHY_PEER_DIR=$work/emulator SUSHY_PEER_USER=admin SUSHY_PEER_PASSWORD=password
emulator_port=$(free_port)
bash "$peers/sushy-emulator.sh" start 1 "$emulator_port" > /dev/null
# The same flows against bmc-sim, which keeps connections open (sushy-emulator answers
# every request with `Connection: close`, so there each request pays a new connection).
cargo build --quiet --release -p bmc-sim
sim_port=$(free_port)
BMC_SIM_PASSWORD=password target/release/bmc-sim --port "$sim_port" --user admin \
    --password-env BMC_SIM_PASSWORD > "$work/bmc-sim.log" 2>&1 &
sim_pid=$!
cleanup() {
    bash "$peers/sushy-emulator.sh" stop > /dev/null 2>&1 || true
    kill "$image_pid" "$sim_pid" 2> /dev/null || true
}
trap cleanup EXIT
# shellcheck disable=SC1091
source "$work/emulator/peer.env"
system=$(curl -fsS -u admin:password "$SUSHY_PEER_URL/redfish/v1/Systems" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Members"][0]["@odata.id"])')

export SUSHY_BENCH_URL=$SUSHY_PEER_URL SUSHY_BENCH_SYSTEM=$system
export SUSHY_BENCH_USER=admin SUSHY_BENCH_PASSWORD=password
export SUSHY_BENCH_IMAGE=http://127.0.0.1:$image_port/boot.iso
export SUSHY_BENCH_FLOWS=${SUSHY_BENCH_FLOWS:-10} SUSHY_BENCH_POLLS=${SUSHY_BENCH_POLLS:-200}

cargo bench --quiet -p bmc-redfish --bench vs_sushy --no-run 2> /dev/null
results=$work/results.txt
log=$work/emulator/emulator.log
: > "$results"
# Requests as the emulator logged them, per cold flow up to and including the power
# request (flows end at their eject), and per poll after the last flow.
count_requests() { # <client> <first log line> <flows per auth mode> <auth modes> <segments to skip>
    tail -n +"$2" "$log" | python3 -c '
import re, sys
client, flows, modes, polls, skip = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4]), int(sys.argv[5])
requests = [l for l in sys.stdin if re.search(r"(GET|POST|PATCH|PUT|DELETE) /redfish", l)]
segments, current = [], []
for l in requests:
    current.append(l)
    if "VirtualMedia.EjectMedia" in l:
        segments.append(current)
        current = []
segments = segments[skip:]
for n, mode in enumerate(modes):
    counted = []
    for seg in segments[n * flows:(n + 1) * flows]:
        upto = next((i + 1 for i, l in enumerate(seg) if "ComputerSystem.Reset" in l), len(seg))
        counted.append(upto)
    print(f"{client} {mode} requests {sum(counted) / max(1, len(counted)):.1f}")
print(f"{client} power-poll requests {len(current) / polls:.1f}")
' "$1" "$3" "$4" "$SUSHY_BENCH_POLLS" "$5"
}
for _ in $(seq 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$sim_port/redfish/v1/" 2> /dev/null && break
    sleep 0.1
done
run_clients() { # <server label> <url> <system> <count in the emulator's log: 0|1>
    export SUSHY_BENCH_URL=$2 SUSHY_BENCH_SYSTEM=$3
    start=$(($(wc -l < "$log") + 1))
    cargo bench --quiet -p bmc-redfish --bench vs_sushy 2> "$work/rust-stderr.txt" | sed "s/^/$1 /" >> "$results"
    # The Rust run starts with a warm-up (host on, an insert and an eject): skipped.
    [ "$4" = 1 ] && count_requests rust "$start" "$SUSHY_BENCH_FLOWS" cold-flow-default-auth,cold-flow-basic-auth 1 | sed "s/^/$1 /" >> "$results"
    start=$(($(wc -l < "$log") + 1))
    "$work/client/bin/python" "$here/vs_sushy.py" | sed "s/^/$1 /" >> "$results"
    [ "$4" = 1 ] && count_requests sushy "$start" "$SUSHY_BENCH_FLOWS" cold-flow 0 | sed "s/^/$1 /" >> "$results"
    return 0
}
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    run_clients sushy-emulator "$SUSHY_PEER_URL" "$system" 1
    run_clients bmc-sim "http://127.0.0.1:$sim_port" /redfish/v1/Systems/1 0
done

echo "sushy $SUSHY_VERSION against sushy-tools 2.2.0 (fake driver, basic auth) and bmc-sim (built-in tree, sessions); $rounds rounds of $SUSHY_BENCH_FLOWS cold flows and $SUSHY_BENCH_POLLS polls per client and server; medians"
python3 - "$results" <<'PY'
import statistics, sys
cpu, logged, own = {}, {}, {}
for line in open(sys.argv[1]):
    parts = line.split()
    key = (parts[0], parts[1], parts[2])
    if parts[3] == "requests":
        logged.setdefault(key, []).append(float(parts[4]))
    else:
        own.setdefault(key, []).append(float(parts[3]))
        cpu.setdefault(key, []).append(float(parts[4]))
med = lambda d, k: statistics.median(d[k]) if k in d else float("nan")
print(f"{'server':<15} {'client':<6} {'measurement':<24} {'requests':>9} {'(in the log)':>13} {'CPU us':>8}")
for key in sorted(cpu):
    print(f"{key[0]:<15} {key[1]:<6} {key[2]:<24} {med(own, key):>9.1f} {med(logged, key):>13.1f} {med(cpu, key):>8.0f}")
for server in sorted({k[0] for k in cpu}):
    for ours, theirs in [("cold-flow-default-auth", "cold-flow"), ("cold-flow-basic-auth", "cold-flow"),
                         ("power-poll", "power-poll")]:
        a, b = (server, "rust", ours), (server, "sushy", theirs)
        if a in cpu and b in cpu:
            print(f"{server}, {ours}: sushy uses {med(cpu, b) / med(cpu, a):.1f}x the client CPU; "
                  f"requests {med(own, b):.0f} (sushy) vs {med(own, a):.0f}")
PY
