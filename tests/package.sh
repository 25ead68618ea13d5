#!/usr/bin/env bash
# The Debian package, built and installed for real (tests/package.rs checks its parts one by one).
# Builds the .deb with cargo-deb from the debug build, installs it with `dpkg -i`, then checks
# what an operator gets: `/usr/bin/credledger`, the system user, the configuration file (a dpkg
# conffile the server reads as it is), the systemd unit (enabled, `systemd-analyze verify` clean,
# exposure 1.5 or less), and the server itself started from that configuration as the
# `credledger` user, the way the unit starts it (no capabilities, no new privileges, umask 0077,
# the state directory 0700), on a loopback port of its own: it writes the server-admin token to
# its file (0600, never to its output), answers /healthz, accepts that token, and stops on SIGTERM.
# Then it purges the package, and removes the user and the state directory it made, so the
# machine is left as it was, also when a check fails. The token is never printed.
#
#   tests/package.sh
#
# Needs root (dpkg installs the package), dpkg, dpkg-deb, adduser (installed with apt-get when
# missing), systemd-analyze (Debian's `systemd`; no running systemd), setpriv (util-linux), curl
# and strip (binutils). cargo-deb, pinned, is installed into target/tools/ the first time (about a
# minute), unless that version is already on PATH. Refuses to run where a `credledger` package,
# user or /var/lib/credledger already exists: it would not be the machine's to remove.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

cargo_deb_version="3.8.0"
unit=/usr/lib/systemd/system/credledger.service
config=/etc/credledger/credledger.toml
state=/var/lib/credledger

fail() {
    echo "tests/package.sh: $*" >&2
    exit 1
}
step() { echo "-- $*" >&2; }

# ---------------------------------------------------------------------------------------------
# What it needs: stated, never skipped.

[[ "$(id -u)" = 0 ]] || fail "needs root: it installs the package with dpkg -i and purges it after (run it as root, e.g. sudo tests/package.sh)"
for tool in dpkg dpkg-deb dpkg-query systemd-analyze setpriv curl strip; do
    command -v "$tool" >/dev/null 2>&1 ||
        fail "needs $tool (Debian packages: dpkg, systemd, util-linux, curl, binutils)"
done
if ! dpkg-query -W -f='${Status}' adduser 2>/dev/null | grep -q 'install ok installed'; then
    command -v apt-get >/dev/null 2>&1 || fail "the package depends on adduser, which is not installed, and there is no apt-get to install it"
    step "installing adduser (the package depends on it)"
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq || true) && apt-get install -y -qq --no-install-recommends adduser
fi
if dpkg-query -W -f='${Status}' credledger 2>/dev/null | grep -q 'installed'; then
    fail "a credledger package is already installed here; this test installs and purges its own: remove it first (dpkg --purge credledger)"
fi
if getent passwd credledger >/dev/null || getent group credledger >/dev/null; then
    fail "a credledger user or group already exists here; this test checks that the package creates it, and removes it after: remove it first (userdel credledger; groupdel credledger)"
fi
[[ ! -e "$state" ]] || fail "$state already exists here; this test makes it and removes it after: move it away first"

# ---------------------------------------------------------------------------------------------
# Cleanup: whatever happens from here on, the machine is left as it was.

work="$(mktemp -d)"
server_pid=""
installed=""
made_state=""
cleanup() {
    local status=$?
    set +e
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid"
        wait "$server_pid" 2>/dev/null
    fi
    if [[ -n "$installed" ]]; then
        dpkg --purge credledger >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; status=1; }
    fi
    [[ -z "$made_state" ]] || rm -rf "$state"
    # Debian keeps a system user when its package is purged; this one exists only for the test.
    if getent passwd credledger >/dev/null; then userdel credledger; fi
    if getent group credledger >/dev/null; then groupdel credledger; fi
    rm -rf "$work"
    if [[ $status -ne 0 ]]; then echo "tests/package.sh: FAILED (the package is purged)" >&2; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# The package.

target="${CARGO_TARGET_DIR:-$root/target}"
if cargo deb --version 2>/dev/null | grep -qx "cargo-deb $cargo_deb_version"; then
    cargo_deb=(cargo deb)
else
    tools="$target/tools/cargo-deb-$cargo_deb_version"
    if ! "$tools/bin/cargo-deb" --version 2>/dev/null | grep -qx "cargo-deb $cargo_deb_version"; then
        step "installing cargo-deb $cargo_deb_version into $tools"
        # Its own temporary build directory, not the workspace's.
        env -u CARGO_TARGET_DIR cargo install --quiet --locked --version "$cargo_deb_version" --root "$tools" cargo-deb
    fi
    cargo_deb=("$tools/bin/cargo-deb")
fi

# The debug build the other stages use: `--profile dev` makes cargo-deb take the binary from
# target/debug where the manifest says target/release (it warns that it is meant for releases).
# Stripped, the binary packs in seconds; `--fast` compresses less.
step "building the .deb (cargo build -p credledger, then cargo-deb --profile dev)"
cargo build --quiet --locked -p credledger
"${cargo_deb[@]}" -p credledger --profile dev --no-build --locked --strip --fast --quiet \
    --output "$work/credledger.deb" >"$work/cargo-deb.log" 2>&1 || { cat "$work/cargo-deb.log" >&2; fail "cargo-deb failed"; }
deb="$work/credledger.deb"
version="$(dpkg-deb -f "$deb" Version)"
crate_version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
[[ "$(dpkg-deb -f "$deb" Package)" = credledger && "$version" = "$crate_version-1" ]] ||
    fail "the package is $(dpkg-deb -f "$deb" Package) $version, not credledger $crate_version-1"
dpkg-deb -f "$deb" Depends | grep -qw adduser || fail "the package does not depend on adduser"

step "dpkg -i credledger_$version"
installed=1
dpkg -i "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "dpkg -i failed"; }
dpkg-query -W -f='${Status}' credledger | grep -q 'install ok installed' || fail "dpkg does not list credledger as installed"

# ---------------------------------------------------------------------------------------------
# What it installed.

step "/usr/bin/credledger, the system user, the configuration"
[[ "$(/usr/bin/credledger --version)" = "credledger $crate_version" ]] ||
    fail "/usr/bin/credledger --version printed '$(/usr/bin/credledger --version)'"
getent passwd credledger >/dev/null || fail "installing it created no credledger user"
getent group credledger >/dev/null || fail "installing it created no credledger group"
[[ "$(getent passwd credledger | cut -d: -f7)" = /usr/sbin/nologin ]] || fail "the credledger user has a login shell"
[[ "$(id -u credledger)" -lt 1000 ]] || fail "the credledger user is not a system user (uid $(id -u credledger))"

[[ -f "$config" ]] || fail "$config is not installed"
dpkg-query -W -f='${Conffiles}' credledger | grep -q " $config " || fail "$config is not a conffile of the package"
cmp -s "$config" cli/debian/credledger.toml || fail "$config is not cli/debian/credledger.toml"
/usr/bin/credledger serve --config "$config" --print-config >"$work/settings.toml" ||
    fail "credledger serve --config $config --print-config failed"
for setting in 'data-dir = "/var/lib/credledger"' 'admin-token-file = "/var/lib/credledger/admin-token"' \
    'store = "sqlite:///var/lib/credledger/events.db"' 'listen = "127.0.0.1:8080"'; do
    grep -qxF "$setting" "$work/settings.toml" || { cat "$work/settings.toml" >&2; fail "the effective settings lack: $setting"; }
done
for doc in README.md CHANGELOG.md operations.md; do
    [[ -f "/usr/share/doc/credledger/$doc" ]] || fail "/usr/share/doc/credledger/$doc is not installed"
done

step "the systemd unit: installed, enabled, systemd-analyze verify and security"
[[ -f "$unit" ]] || fail "$unit is not installed (the package has: $(dpkg -L credledger | grep -F .service || true))"
cmp -s "$unit" cli/debian/credledger.service || fail "$unit is not cli/debian/credledger.service"
[[ -L /etc/systemd/system/multi-user.target.wants/credledger.service ]] ||
    fail "the unit is not enabled (no link in /etc/systemd/system/multi-user.target.wants/)"
if ! systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || [[ -s "$work/verify.log" ]]; then
    cat "$work/verify.log" >&2
    fail "systemd-analyze verify $unit"
fi
systemd-analyze security --offline=true --threshold=15 "$unit" >"$work/security.log" 2>&1 ||
    { cat "$work/security.log" >&2; fail "the installed unit's exposure is above 1.5"; }

# ---------------------------------------------------------------------------------------------
# The server, as the unit runs it: the package's configuration, the credledger user, its state
# directory as StateDirectory= makes it, no capabilities, no new privileges, umask 0077. Only the
# port is the test's own (port 0: the system picks a free one).

step "the server as the credledger user, from $config"
install -d -o credledger -g credledger -m 0700 "$state"
made_state=1
# Made before the server starts: the background job opens them in its own time.
: >"$work/server.out"
: >"$work/server.err"
(
    cd "$state"
    umask 0077
    exec env -i PATH=/usr/bin:/bin NO_COLOR=1 \
        setpriv --reuid=credledger --regid=credledger --init-groups \
        --inh-caps=-all --bounding-set=-all --no-new-privs \
        /usr/bin/credledger serve --config "$config" --listen 127.0.0.1:0
) >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

show_server_output() {
    # Lines holding the admin token, if it ever got there, are left out.
    local token=""
    [[ -r "$state/admin-token" ]] && token="$(cat "$state/admin-token")"
    for stream in out err; do
        if [[ -n "$token" ]]; then grep -vF -- "$token" "$work/server.$stream" >&2 || true; else cat "$work/server.$stream" >&2; fi
    done
}

url=""
for _ in $(seq 300); do
    url="$(sed -n 's/^credledger listening on \(http:\/\/.*\)$/\1/p' "$work/server.out")"
    [[ -z "$url" ]] || break
    kill -0 "$server_pid" 2>/dev/null || { show_server_output; fail "the server exited before it listened"; }
    sleep 0.1
done
[[ -n "$url" ]] || { show_server_output; fail "the server did not listen within 30 s"; }
[[ "$(stat -c %U "/proc/$server_pid")" = credledger ]] || fail "the server does not run as credledger"
grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$server_pid/status" || fail "the server may gain privileges"
grep -q '^CapBnd:[[:space:]]*0*$' "/proc/$server_pid/status" || fail "the server has a capability in its bounding set"

status="$(curl -sS -o "$work/healthz" -w '%{http_code}' "$url/healthz")"
[[ "$status" = 200 ]] || { show_server_output; fail "GET /healthz answered $status"; }

token_file="$state/admin-token"
[[ -s "$token_file" ]] || { show_server_output; fail "the first start wrote no admin token to $token_file"; }
[[ "$(stat -c '%U %a' "$token_file")" = "credledger 600" ]] ||
    fail "$token_file is $(stat -c '%U %a' "$token_file"), not credledger 600"
[[ "$(stat -c '%U %a' "$state")" = "credledger 700" ]] || fail "$state is $(stat -c '%U %a' "$state"), not credledger 700"
if grep -qF -- "$(cat "$token_file")" "$work/server.out" "$work/server.err"; then
    fail "the server printed the admin token (it must only be in $token_file)"
fi
for file in events.db read.db; do
    [[ "$(stat -c %U "$state/$file" 2>/dev/null)" = credledger ]] || fail "$state/$file is missing or not the credledger user's"
done
# The token accepted: an organization created with it (the header from a file, so the token is
# on no command line; the answer, which holds the owner's token, is not printed).
printf 'Authorization: Bearer %s\n' "$(cat "$token_file")" >"$work/auth"
status="$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$url/v1/orgs" -H @"$work/auth" \
    -H 'Content-Type: application/json' -d '{"name": "package-test", "ownerEmail": "ops@package-test.example"}')"
[[ "$status" = 201 ]] || { show_server_output; fail "POST /v1/orgs with the admin token answered $status"; }

kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
[[ $server_status -eq 0 ]] || { show_server_output; fail "the server exited with status $server_status on SIGTERM"; }

# ---------------------------------------------------------------------------------------------
# Purged, nothing of it stays (the user and the state directory are the test's to remove).

step "dpkg --purge credledger"
installed=""
dpkg --purge credledger >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "dpkg --purge failed"; }
for path in /usr/bin/credledger "$config" /etc/credledger "$unit" /etc/systemd/system/multi-user.target.wants/credledger.service /usr/share/doc/credledger; do
    [[ ! -e "$path" && ! -L "$path" ]] || fail "$path is still there after dpkg --purge"
done
echo "package: credledger_$version installed, checked and purged" >&2
