#!/usr/bin/env bash
# The benchmark harness in one command: bench/run.sh [--quick]
#
# Builds the release binaries, starts a fresh `credledger serve` on a temporary data directory and
# a loopback port, creates an organization, 1,000 machine tokens, a service credential and a
# machine identity through the API, runs the fixed-request scenarios (healthz, machine-token-get)
# with wrk and every HTTP scenario with bench's load generator while sampling the server's memory,
# then the same OAuth2 scenarios against the oidc-provider peer (bench/peer, when Node.js and npm
# are present), then the store-level benchmarks; prints a Markdown table against the targets of
# docs/performance.md, every HTTP figure also as a ratio to the same client's /healthz, and writes
# it to bench/results/latest.md.
#
# Needs the Rust toolchain, curl, python3 and wrk (installed with apt-get when missing and run as
# root; Node.js and npm for the peer). Everything runs on this machine: the servers listen on
# 127.0.0.1, and every server started here is stopped on exit. Settings (environment):
# BENCH_DURATION, BENCH_WARMUP (whole seconds), BENCH_CONNECTIONS, BENCH_LOADGEN_THREADS,
# BENCH_WRK_THREADS, BENCH_MACHINE_TOKENS, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

QUICK=0
for argument in "$@"; do
    case "$argument" in
        --quick) QUICK=1 ;;
        -h | --help)
            sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
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
WRK_THREADS=${BENCH_WRK_THREADS:-2}
MACHINE_TOKENS=${BENCH_MACHINE_TOKENS:-1000}

say() { printf '== %s\n' "$*" >&2; }
fail() {
    printf 'bench/run.sh: %s\n' "$*" >&2
    exit 1
}
for tool in cargo curl python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing: install it first"
done
# wrk, a client written in C, measures the fixed-request scenarios: the ceiling the load generator
# is held against. Without it, their rows say "not measured: install wrk".
if ! command -v wrk >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing wrk (apt-get install -y wrk)"
    apt-get install -y wrk >&2 || { apt-get update >&2 && apt-get install -y wrk >&2; } || true
fi
if command -v wrk >/dev/null 2>&1; then
    # `wrk -v` prints its version and exits 1.
    WRK_NOTE="$({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $1, $2 }'), $WRK_THREADS threads"
else
    WRK_NOTE="not measured: install wrk"
    say "wrk is missing: its scenarios are not measured (install wrk)"
fi

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
CLIENT_PID=

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
    stop "$CLIENT_PID"
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

# Runs a load client (the command after SERVER, a pid) in the background while sampling the
# server's memory every 0.2 s; sets CLIENT_STATUS, SERVER_PEAK_KIB, SERVER_HWM_KIB and
# SERVER_CORES (the server's CPU use over the client's run).
sampled() {
    local server=$1
    shift
    local rss cpu_before started
    SERVER_PEAK_KIB=0
    cpu_before=$(cpu_ticks "$server")
    started=$(date +%s.%N)
    "$@" &
    CLIENT_PID=$!
    while kill -0 "$CLIENT_PID" 2>/dev/null; do
        rss=$(memory_kib "$server" VmRSS)
        if [ -n "$rss" ] && [ "$rss" -gt "$SERVER_PEAK_KIB" ]; then SERVER_PEAK_KIB=$rss; fi
        sleep 0.2
    done
    CLIENT_STATUS=0
    wait "$CLIENT_PID" || CLIENT_STATUS=$?
    CLIENT_PID=
    SERVER_HWM_KIB=$(memory_kib "$server" VmHWM)
    SERVER_CORES=$(python3 -c 'import sys, time; a, b, t = map(float, sys.argv[1:]); print(round((b - a) / 100 / (time.time() - t), 2))' \
        "${cpu_before:-0}" "$(cpu_ticks "$server")" "$started")
}

# Runs loadgen for SCENARIO against SETUP while sampling the memory of SERVER (a pid), and
# appends its JSON line, with the memory figures, to the results.
measure() {
    local scenario=$1 setup=$2 server=$3
    shift 3
    say "loadgen $scenario $* (${WARMUP}s warm-up, ${DURATION}s measured, $CONNECTIONS connections)"
    local out=$WORK/loadgen.out
    sampled "$server" "$BIN/loadgen" "$scenario" --setup "$setup" --connections "$CONNECTIONS" \
        --duration "$DURATION" --warmup "$WARMUP" --threads "$THREADS" "$@" >"$out" 2>"$WORK/loadgen.err"
    python3 - "$out" "$WORK/loadgen.err" "$scenario" "$CLIENT_STATUS" "$SERVER_PEAK_KIB" "${SERVER_HWM_KIB:-0}" \
        "$SERVER_CORES" "$*" >>"$RESULTS" <<'EOF'
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
result.update(kind="http", client="loadgen", serverRssKiB=int(peak), serverHwmKiB=int(hwm), serverCpuCores=float(cpu))
print(json.dumps(result))
EOF
    tail -n1 "$RESULTS" >&2
}

# Runs a command (wrk) with its output in OUT and OUT.err, and writes to OUT.cpu the CPU time it
# used (user + system, all its threads, in seconds); a TERM or an INT is passed on to it. A file of
# its own, so that the pid `sampled` stops on exit is this process's.
WRK_TIMED=$WORK/wrk-timed.py
cat >"$WRK_TIMED" <<'EOF'
import os, signal, subprocess, sys
out, command = sys.argv[1], sys.argv[2:]
with open(out, "w") as stdout, open(out + ".err", "w") as stderr:
    child = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: child.terminate())
    _, status, usage = os.wait4(child.pid, 0)
open(out + ".cpu", "w").write(f"{usage.ru_utime + usage.ru_stime}\n")
sys.exit(os.waitstatus_to_exitcode(status))
EOF

# Runs wrk for SCENARIO (healthz or machine-token-get) against SERVER (a pid) at URL: a warm-up
# run, then the measured run while the server's memory is sampled. Parses wrk's report into the
# JSON line loadgen prints, with "client": "wrk", and appends it to the results. Arguments after
# URL go to the Lua script: bench/wrk/rotate.lua (the tokens file) for machine-token-get,
# bench/wrk/summary.lua (none) for healthz.
measure_wrk() {
    local scenario=$1 server=$2 url=$3
    shift 3
    if ! command -v wrk >/dev/null 2>&1; then
        printf '{"scenario": "%s", "kind": "http", "client": "wrk", "notMeasured": "install wrk"}\n' \
            "$scenario" >>"$RESULTS"
        return 0
    fi
    local script=bench/wrk/summary.lua
    [ "$scenario" = healthz ] || script=bench/wrk/rotate.lua
    local options=(-t "$WRK_THREADS" -c "$CONNECTIONS" --timeout 10s --latency -s "$script")
    local script_args=()
    [ $# = 0 ] || script_args=(-- "$@")
    say "wrk $scenario (${WARMUP}s warm-up, ${DURATION}s measured, $CONNECTIONS connections, $WRK_THREADS threads)"
    local out=$WORK/wrk.out status=0
    SERVER_PEAK_KIB=0 SERVER_HWM_KIB=0 SERVER_CORES=0
    if [ "$WARMUP" != 0 ]; then
        python3 "$WRK_TIMED" "$out" wrk "${options[@]}" -d "${WARMUP}s" "$url" "${script_args[@]}" || status=$?
    fi
    if [ "$status" = 0 ]; then
        sampled "$server" python3 "$WRK_TIMED" "$out" wrk "${options[@]}" -d "${DURATION}s" "$url" "${script_args[@]}"
        status=$CLIENT_STATUS
    fi
    python3 - "$out" "$scenario" "$status" "$SERVER_PEAK_KIB" "${SERVER_HWM_KIB:-0}" "$SERVER_CORES" \
        "$CONNECTIONS" "$WRK_THREADS" >>"$RESULTS" <<'EOF'
import json, re, sys
out, scenario, status, peak, hwm, cpu, connections, threads = sys.argv[1:]
text = open(out).read()
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}  # to milliseconds


def search(pattern, default=None):
    match = re.search(pattern, text, re.MULTILINE)
    return match.groups() if match else default


result = {"scenario": scenario, "client": "wrk"}
rate = search(r"^Requests/sec:\s+([\d.]+)")
total = search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),")
if status != "0" or not rate or not total:
    lines = open(out + ".err").read().strip().splitlines() + text.strip().splitlines()
    result["failed"] = f"wrk (exit {status}): " + (lines[-1] if lines else "no report")
else:
    percentiles = {
        p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)$", text, re.MULTILINE)
    }
    socket = search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", ("0", "0", "0", "0"))
    socket = dict(zip(("connect", "read", "write", "timeout"), map(int, socket)))
    non2xx = int(search(r"^\s*Non-2xx or 3xx responses: (\d+)", ("0",))[0])
    answered = int(total[0])
    seconds = float(total[1]) * UNITS[total[2]] / 1e3
    # summary.lua's line: the exact duration and p99.9, which wrk's text report leaves out.
    summary = search(r"^wrk-summary (\{.*\})$")
    summary = json.loads(summary[0]) if summary else {}
    seconds = summary.get("durationSeconds") or seconds
    outcomes = {"2xx or 3xx": answered - non2xx}
    if non2xx:
        outcomes["non-2xx or 3xx"] = non2xx
    outcomes.update({f"socket {kind}": count for kind, count in socket.items() if count})
    # As loadgen's, req/s counts successful answers (wrk's own Requests/sec counts every answer),
    # and errors are non-2xx answers and transport failures.
    result.update(
        connections=int(connections),
        durationSeconds=round(seconds, 3),
        requests=answered + sum(socket.values()),
        errors=non2xx + sum(socket.values()),
        rps=round((answered - non2xx) / seconds, 1),
        p50Ms=percentiles.get("50"),
        p99Ms=percentiles.get("99"),
        p999Ms=summary.get("p999Ms"),
        outcomes=outcomes,
    )
    detail = {"wrkRequestsPerSec": float(rate[0]), "wrkThreads": int(threads)}
    try:
        detail["clientCpuCores"] = round(float(open(out + ".cpu").read()) / seconds, 2)
    except (OSError, ValueError):
        pass
    result["detail"] = detail
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

say "creating the organization, $MACHINE_TOKENS machine tokens, a service credential and a machine identity"
ORG_JSON=$(api POST /v1/orgs "$ADMIN" '{"name": "bench", "ownerEmail": "ops@bench.example"}')
ORG=$(field id <<<"$ORG_JSON")
OWNER=$(field ownerToken <<<"$ORG_JSON")
# The machine tokens the machine-token scenarios rotate through, one a line: created through the
# API like the rest, over 8 keep-alive connections, so that group commit batches them.
URL=$URL ORG=$ORG OWNER=$OWNER python3 - "$MACHINE_TOKENS" "$WORK/machine-tokens.txt" <<'EOF' ||
import http.client, json, os, sys, urllib.parse
from concurrent.futures import ThreadPoolExecutor
count, out = int(sys.argv[1]), sys.argv[2]
url = urllib.parse.urlsplit(os.environ["URL"])
path = f"/v1/machine-tokens/{os.environ['ORG']}"
headers = {"Authorization": f"Bearer {os.environ['OWNER']}", "Content-Type": "application/json"}
WORKERS = 8

def create(worker):
    connection, tokens = http.client.HTTPConnection(url.hostname, url.port, timeout=30), []
    for index in range(worker, count, WORKERS):
        body = json.dumps({"name": f"bench-get-{index:04}", "environmentHint": "bench"})
        connection.request("POST", path, body, headers)
        answer = connection.getresponse()
        text = answer.read()
        if answer.status // 100 != 2:
            sys.exit(f"POST {path} answered {answer.status}: {text.decode(errors='replace')}")
        tokens.append((index, json.loads(text)["token"]))
    return tokens

with ThreadPoolExecutor(WORKERS) as pool:
    tokens = sorted(token for batch in pool.map(create, range(WORKERS)) for token in batch)
with open(out, "w") as file:
    file.writelines(f"{token}\n" for _, token in tokens)
EOF
    fail "creating $MACHINE_TOKENS machine tokens failed"
MACHINE_TOKEN=$(head -n1 "$WORK/machine-tokens.txt")
[ -n "$MACHINE_TOKEN" ] || fail "no machine token was created (BENCH_MACHINE_TOKENS=$MACHINE_TOKENS)"
SERVICE_JSON=$(api POST "/v1/service-credentials/$ORG" "$OWNER" '{"name": "bench-client"}')
api POST "/v1/projects/$ORG" "$OWNER" '{"name": "bench", "environments": ["production"]}' >/dev/null
# The CLI generates the machine's key pair locally and registers only its public key.
MACHINE_KEY=$(CREDLEDGER_URL=$URL CREDLEDGER_TOKEN=$OWNER CREDLEDGER_CONFIG_DIR=$WORK/cli \
    "$BIN/credledger" machine create bench-machine --project bench --env production -o json | field machineKey)

URL=$URL ORG=$ORG OWNER=$OWNER MACHINE_TOKEN=$MACHINE_TOKEN MACHINE_KEY=$MACHINE_KEY SERVICE_JSON=$SERVICE_JSON \
    python3 - "$WORK/setup.json" "$WORK/machine-tokens.txt" <<'EOF'
import json, os, sys
service = json.loads(os.environ["SERVICE_JSON"])
json.dump({
    "url": os.environ["URL"],
    "orgId": os.environ["ORG"],
    "ownerToken": os.environ["OWNER"],
    "machineToken": os.environ["MACHINE_TOKEN"],
    "machineTokens": open(sys.argv[2]).read().split(),
    "clientId": service["clientId"],
    "clientSecret": service["clientSecret"],
    "scope": "credledger-api/read",
    "machineKey": os.environ["MACHINE_KEY"],
}, open(sys.argv[1], "w"))
EOF

# The fixed-request scenarios with wrk, each followed by loadgen on the same workload: every HTTP
# figure is read against the same client's /healthz in this run, and loadgen's /healthz against
# wrk's.
check_get() {
    local path=$1 token=${2:-} status
    local args=(-sS -o /dev/null -w '%{http_code}')
    [ -z "$token" ] || args+=(-H "Authorization: Bearer $token")
    status=$(curl "${args[@]}" "$URL$path") || fail "GET $path failed"
    [ "$status" = 200 ] || fail "GET $path answered $status: the setup is broken, nothing is measured"
}
check_get /healthz
check_get "/v1/projects/$ORG" "$(tail -n1 "$WORK/machine-tokens.txt")"
measure_wrk healthz "$SERVER_PID" "$URL/healthz"
measure healthz "$WORK/setup.json" "$SERVER_PID"
measure_wrk machine-token-get "$SERVER_PID" "$URL/v1/projects/$ORG" "$WORK/machine-tokens.txt"
measure machine-token-get "$WORK/setup.json" "$SERVER_PID"
for scenario in client-credentials jwt-bearer introspect-machine-token introspect-jwt mixed; do
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
    --wrk "$WRK_NOTE" --machine-tokens "$MACHINE_TOKENS" \
    | tee bench/results/latest.md
say "written to bench/results/latest.md"
