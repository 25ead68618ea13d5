#!/usr/bin/env bash
# Runs schemathesis against the real server: `/openapi.json` must describe exactly what the server
# accepts and answers. Starts `credledger serve` on a free loopback port with a fresh data
# directory, creates an organization through the API, tests every operation with the owner's PAT
# (every check: no 5xx, statuses, content types, headers and bodies as documented, schema-valid
# requests accepted, invalid ones refused), then stops the server by its pid.
#
#   tests/schemathesis.sh [SECONDS]     time budget of the run (default 150)
#
# Environment: CREDLEDGER_BIN (a built binary; default: `cargo build -p credledger`),
# SCHEMATHESIS (the `st` command; default: installed into target/schemathesis-venv),
# SCHEMATHESIS_EXAMPLES (examples per operation, default 20), SCHEMATHESIS_SEED (default 1),
# PYTHON (the interpreter to install it with; by default the first of 3.12 or later found, else
# python3).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

budget="${1:-150}"
examples="${SCHEMATHESIS_EXAMPLES:-20}"
version="4.32.5"

if [[ -n "${SCHEMATHESIS:-}" ]]; then
    st="$SCHEMATHESIS"
else
    venv="target/schemathesis-venv"
    st="$root/$venv/bin/st"
    if ! "$st" --version 2>/dev/null | grep -q "$version"; then
        # CPython 3.11 up to at least 3.11.7 fails inside Hypothesis ("AST constructor recursion
        # depth mismatch"): take an interpreter of 3.12 or later where there is one.
        python=""
        pyenv_versions="$(pyenv root 2>/dev/null || true)/versions"
        for candidate in ${PYTHON:-} python3.13 python3.12 "$pyenv_versions"/3.1[2-9]*/bin/python3 python3; do
            if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
                python="$candidate"
                break
            fi
        done
        python="${python:-${PYTHON:-python3}}"
        echo "installing schemathesis $version into $venv with $python" >&2
        rm -rf "$venv"
        "$python" -m venv "$venv" && "$venv/bin/pip" install --quiet "schemathesis==$version" || {
            echo "schemathesis could not be installed: install Python 3 with venv and pip" \
                "(Debian: python3-venv), then \`pip install schemathesis==$version\`," \
                "or set SCHEMATHESIS to its \`st\` command" >&2
            exit 1
        }
    fi
fi

if [[ -n "${CREDLEDGER_BIN:-}" ]]; then
    binary="$CREDLEDGER_BIN"
else
    cargo build --quiet -p credledger
    binary="target/debug/credledger"
fi

work="$(mktemp -d)"
server=""
stop() {
    if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server"
        for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop EXIT

CREDLEDGER_LOG=warn "$binary" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/out" 2>"$work/err" &
server=$!
url=""
for _ in $(seq 300); do
    url="$(sed -n 's/^credledger listening on //p' "$work/out")"
    [[ -n "$url" ]] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/err" >&2; echo "the server exited" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$url" ]] || { echo "the server did not announce its address" >&2; exit 1; }
admin="$(grep -o 'cl_pat_[0-9a-f]*' "$work/out" | head -n 1)"

# An organization, so that its owner's requests reach the handlers' logic, not only refusals.
org="$(curl -sf -X POST "$url/v1/orgs" -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' -d '{"name": "acme", "ownerEmail": "ops@acme.example"}')"
owner="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["ownerToken"])' <<<"$org")"

echo "schemathesis $version against $url, ${budget}s, $examples examples per operation" >&2
status=0
# From the scratch directory: schemathesis keeps a cache in the working directory.
(cd "$work" && "$st" --config-file "$root/tests/schemathesis.toml" run "$url/openapi.json" \
    --header "Authorization: Bearer $owner" \
    --checks all \
    --max-examples "$examples" \
    --max-time "$budget" \
    --request-timeout 15 \
    --workers 2 \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --generation-database none \
    --no-color \
    --output-truncate false \
    --warnings off) >"$work/report" 2>&1 || status=$?
# schemathesis's own tracebacks can run to megabytes: keep the report readable.
cut -c1-2000 "$work/report"

if grep -q 'panicked' "$work/err"; then
    grep -B2 -A8 'panicked' "$work/err" >&2
    echo "the server panicked under schemathesis" >&2
    status=1
fi
exit "$status"
