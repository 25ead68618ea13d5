#!/usr/bin/env bash
# The benchmark harness in one command: bench/run.sh [--quick]
#
# Builds the release binaries, starts a fresh `credledger serve` on a temporary data directory and
# a loopback port, creates an organization, a machine token, a service credential and a machine
# identity through the API, runs every HTTP scenario with bench's load generator while sampling
# the server's memory, then the same OAuth2 scenarios against the oidc-provider peer (bench/peer,
# when Node.js and npm are present), then the store-level benchmarks; prints a Markdown table
# against the targets of docs/performance.md and writes it to bench/results/latest.md.
#
# Needs only the Rust toolchain, curl and python3 (Node.js and npm for the peer). Everything runs
# on this machine: the servers listen on 127.0.0.1, and every server started here is stopped on
# exit. Settings (environment): BENCH_DURATION, BENCH_WARMUP (seconds), BENCH_CONNECTIONS,
# BENCH_LOADGEN_THREADS, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

QUICK=0
for argument in "$@"; do
    case "$argument" in
        --quick) QUICK=1 ;;
        -h | --help)
            sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "usage: bench/run.sh [--quick]" >&2
            exit 2
            ;;
    esac
done
if [ "$QUICK" = 1 ]; then
    DURATION=${BENCH_DURATION:-2}
    WARMUP=${BENCH_WARMUP:-1}
    STORE_ARGS=(--events "${BENCH_EVENTS:-100000}" --credentials "${BENCH_CREDENTIALS:-10000}")
else
    DURATION=${BENCH_DURATION:-10}
    WARMUP=${BENCH_WARMUP:-2}
    # DESIGN.md's 1M sizes take about twenty minutes here (projecting 1M credentials alone takes
    # minutes); BENCH_EVENTS=1000000 BENCH_CREDENTIALS=1000000 asks for them.
    STORE_ARGS=(--events "${BENCH_EVENTS:-200000}" --credentials "${BENCH_CREDENTIALS:-100000}")
fi
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_LOADGEN_THREADS:-2}

say() { printf '== %s\n' "$*" >&2; }
fail() {
    printf 'bench/run.sh: %s\n' "$*" >&2
    exit 1
}
for tool in cargo curl python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing: install it first"
done

# --- build ------------------------------------------------------------------------------------
say "building the release binaries (credledger, loadgen, storebench)"
cargo build --release --locked -p credledger -p credledger-bench >&2
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
for binary in credledger loadgen storebench; do
    [ -x "$BIN/$binary" ] || fail "$BIN/$binary was not built"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/credledger-bench.XXXXXX")
RESULTS=$WORK/results.ndjson
: >"$RESULTS"
SERVER_PID=
PEER_PID=
LOADGEN_PID=

stop() {
    local pid=$1
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$LOADGEN_PID"
    stop "$SERVER_PID"
    stop "$PEER_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until FILE has a line matching PATTERN, while process PID lives; prints the line.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3 what=$4
    for _ in $(seq 300); do
        if grep -m1 -E "$pattern" "$file" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$what did not start; its output:" >&2
    cat "$file" "$file.err" >&2 2>/dev/null || true
    return 1
}

# A JSON field of standard input.
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# Resident memory of a process in KiB: the current VmRSS, or VmHWM (its peak since it started).
memory_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# CPU time a process has used (user + system), in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0; }

# Runs loadgen for SCENARIO against SETUP while sampling the memory of SERVER (a pid), and
# appends its JSON line, with the memory figures, to the results.
measure() {
    local scenario=$1 setup=$2 server=$3
    shift 3
    say "loadgen $scenario $* (${WARMUP}s warm-up, ${DURATION}s measured, $CONNECTIONS connections)"
    local out=$WORK/loadgen.out peak=0 rss cpu_before started
    cpu_before=$(cpu_ticks "$server")
    started=$(date +%s.%N)
    "$BIN/loadgen" "$scenario" --setup "$setup" --connections "$CONNECTIONS" --duration "$DURATION" \
        --warmup "$WARMUP" --threads "$THREADS" "$@" >"$out" 2>"$WORK/loadgen.err" &
    local loadgen=$!
    LOADGEN_PID=$loadgen
    while kill -0 "$loadgen" 2>/dev/null; do
        rss=$(memory_kib "$server" VmRSS)
        if [ -n "$rss" ] && [ "$rss" -gt "$peak" ]; then peak=$rss; fi
        sleep 0.2
    done
    local status=0
    wait "$loadgen" || status=$?
    LOADGEN_PID=
    local hwm cpu
    hwm=$(memory_kib "$server" VmHWM)
    cpu=$(python3 -c 'import sys, time; a, b, t = map(float, sys.argv[1:]); print(round((b - a) / 100 / (time.time() - t), 2))' \
        "${cpu_before:-0}" "$(cpu_ticks "$server")" "$started")
    python3 - "$out" "$WORK/loadgen.err" "$scenario" "$status" "$peak" "${hwm:-0}" "$cpu" "$*" >>"$RESULTS" <<'EOF'
import json, sys
out, err, scenario, status, peak, hwm, cpu, flags = sys.argv[1:]
line = next((l for l in open(out).read().splitlines() if l.startswith("{")), None)
if status == "0" and line:
    result = json.loads(line)
else:
    name = ("peer-" if "--peer" in flags else "") + scenario
    lines = open(err).read().strip().splitlines()
    message = next((l for l in reversed(lines) if l.startswith("loadgen:")), lines[-1] if lines else "")
    result = {"scenario": name, "failed": message or f"exit {status}"}
result.update(kind="http", serverRssKiB=int(peak), serverHwmKiB=int(hwm), serverCpuCores=float(cpu))
print(json.dumps(result))
EOF
    tail -n1 "$RESULTS" >&2
}

# --- credledger -------------------------------------------------------------------------------
say "starting credledger serve on a fresh data directory"
"$BIN/credledger" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" --admin-token-file "$WORK/admin-token" \
    >"$WORK/server.out" 2>"$WORK/server.out.err" &
SERVER_PID=$!
LISTENING=$(wait_for_line "$WORK/server.out" '^credledger listening on http://' "$SERVER_PID" "credledger serve")
URL=${LISTENING#credledger listening on }
ADMIN=$(tr -d '[:space:]' <"$WORK/admin-token")

# One API call; prints the answer, fails the run on an error status.
api() {
    local method=$1 path=$2 token=$3 body=${4:-}
    local args=(-sS --fail-with-body -X "$method" -H "Authorization: Bearer $token")
    [ -z "$body" ] || args+=(-H 'Content-Type: application/json' -d "$body")
    curl "${args[@]}" "$URL$path" || fail "$method $path failed"
}

say "creating the organization, a machine token, a service credential and a machine identity"
ORG_JSON=$(api POST /v1/orgs "$ADMIN" '{"name": "bench", "ownerEmail": "ops@bench.example"}')
ORG=$(field id <<<"$ORG_JSON")
OWNER=$(field ownerToken <<<"$ORG_JSON")
MACHINE_TOKEN=$(api POST "/v1/machine-tokens/$ORG" "$OWNER" \
    '{"name": "bench-get", "environmentHint": "bench"}' | field token)
SERVICE_JSON=$(api POST "/v1/service-credentials/$ORG" "$OWNER" '{"name": "bench-client"}')
api POST "/v1/projects/$ORG" "$OWNER" '{"name": "bench", "environments": ["production"]}' >/dev/null
# The CLI generates the machine's key pair locally and registers only its public key.
MACHINE_KEY=$(CREDLEDGER_URL=$URL CREDLEDGER_TOKEN=$OWNER CREDLEDGER_CONFIG_DIR=$WORK/cli \
    "$BIN/credledger" machine create bench-machine --project bench --env production -o json | field machineKey)

URL=$URL ORG=$ORG OWNER=$OWNER MACHINE_TOKEN=$MACHINE_TOKEN MACHINE_KEY=$MACHINE_KEY SERVICE_JSON=$SERVICE_JSON \
    python3 - "$WORK/setup.json" <<'EOF'
import json, os, sys
service = json.loads(os.environ["SERVICE_JSON"])
json.dump({
    "url": os.environ["URL"],
    "orgId": os.environ["ORG"],
    "ownerToken": os.environ["OWNER"],
    "machineToken": os.environ["MACHINE_TOKEN"],
    "clientId": service["clientId"],
    "clientSecret": service["clientSecret"],
    "scope": "credledger-api/read",
    "machineKey": os.environ["MACHINE_KEY"],
}, open(sys.argv[1], "w"))
EOF

for scenario in healthz machine-token-get client-credentials jwt-bearer introspect-machine-token introspect-jwt mixed; do
    measure "$scenario" "$WORK/setup.json" "$SERVER_PID"
done
EVENTS_DB_BYTES=$(stat -c %s "$WORK/data/events.db" 2>/dev/null || echo 0)
say "stopping credledger"
stop "$SERVER_PID"
SERVER_PID=

# --- the oidc-provider peer -------------------------------------------------------------------
PEER_NOTE=""
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    say "installing the peer (npm ci in bench/peer)"
    if (cd bench/peer && npm ci --no-audit --no-fund --loglevel=error >&2); then
        NODE_ENV=production node bench/peer/server.js 0 >"$WORK/peer.out" 2>"$WORK/peer.out.err" &
        PEER_PID=$!
        # The first JSON line is the peer's setup; oidc-provider may print notices after it.
        if wait_for_line "$WORK/peer.out" '^\{' "$PEER_PID" "the oidc-provider peer" >"$WORK/peer.json"; then
            measure client-credentials "$WORK/peer.json" "$PEER_PID" --peer
            measure introspect-opaque "$WORK/peer.json" "$PEER_PID" --peer
            PEER_VERSION=$(cd bench/peer && node -p 'require("./node_modules/oidc-provider/package.json").version')
            PEER_NOTE="oidc-provider $PEER_VERSION on Node.js $(node --version)"
        else
            PEER_NOTE="skipped: the peer did not start"
        fi
        stop "$PEER_PID"
        PEER_PID=
    else
        PEER_NOTE="skipped: npm ci in bench/peer failed"
    fi
else
    PEER_NOTE="skipped: Node.js and npm are not installed"
fi
say "peer: $PEER_NOTE"

# --- store-level benchmarks -------------------------------------------------------------------
for scenario in appends rebuild verify audit-query hot-index; do
    say "storebench $scenario ${STORE_ARGS[*]}"
    mkdir -p "$WORK/store-$scenario"
    status=0
    "$BIN/storebench" "$scenario" "${STORE_ARGS[@]}" --data-dir "$WORK/store-$scenario" \
        >"$WORK/storebench.out" 2>"$WORK/storebench.err" || status=$?
    python3 - "$WORK/storebench.out" "$scenario" "$status" >>"$RESULTS" <<'EOF'
import json, sys
out, scenario, status = sys.argv[1:]
result = None
for line in open(out).read().splitlines():
    try:
        result = json.loads(line)
    except ValueError:
        continue
if not isinstance(result, dict) or "value" not in result:
    result = {"scenario": scenario, "notMeasured": f"storebench printed no result (exit {status})"}
result["kind"] = "store"
print(json.dumps(result))
EOF
    tail -n1 "$RESULTS" >&2
    rm -rf "$WORK/store-$scenario"
done

# --- the report -------------------------------------------------------------------------------
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then COMMIT="$COMMIT (dirty)"; fi
MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
mkdir -p bench/results
python3 bench/report.py "$RESULTS" \
    --commit "$COMMIT" --machine "$(nproc) cores, ${MODEL:-unknown CPU}, $(uname -sr)" \
    --mode "$([ "$QUICK" = 1 ] && echo quick || echo full)" --duration "$DURATION" --warmup "$WARMUP" \
    --connections "$CONNECTIONS" --threads "$THREADS" --peer "$PEER_NOTE" --events-db-bytes "$EVENTS_DB_BYTES" \
    | tee bench/results/latest.md
say "written to bench/results/latest.md"
