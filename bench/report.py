#!/usr/bin/env python3
"""Prints bench/run.sh's results as a Markdown table against the targets of docs/performance.md.

Input: the NDJSON file run.sh collects, one result per line: loadgen's JSON lines and wrk's report
in the same shape (kind "http", "client" "loadgen" or "wrk", with the server's memory added) and
storebench's (kind "store"). Every HTTP figure is also given as a ratio to the ceiling: the same
client's `/healthz` in the same run. Standard library only.
"""

import argparse
import json
import time

# docs/performance.md#targets. The share of the ceiling (the same client's /healthz in this run)
# a durable machine-token request must reach, and its p99.
MACHINE_TOKEN_SHARE, MACHINE_TOKEN_P99_MS = 0.33, 5.0
# And the absolute rate the targets state beside the share.
MACHINE_TOKEN_RPS = 40_000
# credledger / peer, the same client measuring both.
PEER_FACTOR = 4.0
# The harness's own criterion: loadgen's /healthz against wrk's; below it, loadgen is the bottleneck.
CLIENT_BOUND_BELOW = 0.90


def machine_token_check(result, share):
    return share is not None and share >= MACHINE_TOKEN_SHARE and (result["p99Ms"] or 1e9) <= MACHINE_TOKEN_P99_MS


# The HTTP rows, in order: (client, scenario) -> (label, target text, check of (result, share of
# the ceiling), or None when none is set). The peer's rows are loadgen's.
HTTP_ROWS = {
    ("wrk", "healthz"): ("healthz (wrk)", "the ceiling (an axum hello ≈ 124k req/s elsewhere)", None),
    ("loadgen", "healthz"): (
        "healthz (loadgen)",
        f"≥ {CLIENT_BOUND_BELOW:.2f} of wrk's, else loadgen is client-bound",
        None,  # judged against wrk's row, in `main`
    ),
    ("wrk", "machine-token-get"): (
        "machine-token-get (wrk, {tokens} tokens)",
        f"≥ {MACHINE_TOKEN_SHARE} of ceiling, p99 ≤ {MACHINE_TOKEN_P99_MS:g} ms",
        machine_token_check,
    ),
    ("loadgen", "machine-token-get"): (
        "machine-token-get (loadgen, {tokens} tokens)",
        "the wrk row holds the target",
        None,
    ),
    ("loadgen", "client-credentials"): ("client-credentials", "≥ 20k req/s", lambda r, _: r["rps"] >= 20_000),
    ("loadgen", "jwt-bearer"): ("jwt-bearer", "none set", None),
    ("loadgen", "introspect-machine-token"): ("introspect-machine-token", "none set", None),
    ("loadgen", "introspect-jwt"): ("introspect-jwt", "none set", None),
    ("loadgen", "mixed"): ("mixed ({tokens} tokens)", "none set", None),
    ("loadgen", "peer-client-credentials"): ("peer-client-credentials", "reference ≈ 6.7k req/s", None),
    ("loadgen", "peer-introspect-opaque"): ("peer-introspect-opaque", "reference ≈ 10k req/s", None),
}
# Store targets: (text, unit the check expects, check of the value, or None).
STORE_TARGETS = {
    "appends": ("≥ 200k events/s", "events/s", lambda v: v >= 200_000),
    "rebuild": ("≥ 300k events/s", "events/s", lambda v: v >= 300_000),
    "verify": ("≥ 1M events/s", "events/s", lambda v: v >= 1_000_000),
    "audit-query": ("none set", None, None),
    "hot-index": ("≤ 1 KiB per credential", "bytes/credential", lambda v: v <= 1024),
}
STORE_ORDER = list(STORE_TARGETS)
# (label, credledger scenario, peer scenario): both measured by loadgen.
RATIOS = [
    ("client_credentials grant", "client-credentials", "peer-client-credentials"),
    ("introspection: credledger JWT / peer opaque token", "introspect-jwt", "peer-introspect-opaque"),
    ("introspection: credledger machine token / peer opaque token", "introspect-machine-token", "peer-introspect-opaque"),
    ("machine-token request (durable) / peer introspection (the targets' comparison)", "machine-token-get", "peer-introspect-opaque"),
]


def number(value, unit=""):
    if value is None:
        return "—"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def ms(value):
    return "—" if value is None else f"{value:.2f} ms"


def mib(kib):
    return f"{kib / 1024:.0f} MiB" if kib else "—"


def errors(result):
    count, requests = result.get("errors", 0), result.get("requests", 0)
    if not count:
        return "0"
    return f"{count} ({100 * count / max(requests, 1):.1f} %)"


def met(check, *values):
    if check is None:
        return "—"
    return "yes" if check(*values) else "**no**"


def measured(result):
    return bool(result) and "rps" in result


def share(result, ceiling):
    """The result's req/s as a share of the ceiling's, or None."""
    if measured(result) and measured(ceiling) and ceiling["rps"]:
        return result["rps"] / ceiling["rps"]
    return None


def http_row(key, label, result, ceiling, flag=""):
    _, target, check = HTTP_ROWS[key]
    if result is None or "notMeasured" in result:
        reason = f"not measured: {result['notMeasured']}" if result else "not measured"
        return f"| {label} | {reason} | — | — | — | — | — | — | {target} | — |"
    if "failed" in result:
        reason = result["failed"].replace("|", "\\|")
        return f"| {label} | failed: {reason} | — | — | — | — | — | {mib(result.get('serverRssKiB'))} | {target} | — |"
    memory = f"{mib(result['serverRssKiB'])} (peak {mib(result['serverHwmKiB'])})"
    fraction = share(result, ceiling)
    ratio = ("—" if fraction is None else f"{fraction:.2f}") + flag
    return (
        f"| {label} | {number(result['rps'], 'req/s')} | {ratio} | {ms(result['p50Ms'])} | {ms(result['p99Ms'])} "
        f"| {ms(result.get('p999Ms'))} | {errors(result)} | {memory} | {target} | {met(check, result, fraction)} |"
    )


def store_row(name, result):
    target, unit, check = STORE_TARGETS.get(name, ("none set", None, None))
    if result is None or "notMeasured" in result:
        return f"| store: {name} | not measured | — | — | — | — | — | — | {target} | — |"
    detail = result.get("detail") or {}
    value = number(result["value"], result.get("unit", ""))
    cells = [detail.get(key) for key in ("p50Ms", "p99Ms", "p999Ms")]
    latencies = " | ".join(ms(cell) if isinstance(cell, (int, float)) else "—" for cell in cells)
    verdict = met(check, result["value"]) if result.get("unit") == unit or check is None else f"unit is not {unit}"
    return f"| store: {name} | {value} | — | {latencies} | — | — | {target} | {verdict} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results")
    for option in ("commit", "machine", "mode", "duration", "warmup", "connections", "threads", "peer", "wrk"):
        parser.add_argument(f"--{option}", default="?")
    parser.add_argument("--events-db-bytes", type=int, default=0)
    parser.add_argument("--machine-tokens", type=int, default=1000)
    args = parser.parse_args()

    http, store = {}, {}
    with open(args.results, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                result = json.loads(line)
                if result.get("kind") == "store":
                    store[result["scenario"]] = result
                else:
                    http[(result.get("client", "loadgen"), result["scenario"])] = result

    tokens = f"{args.machine_tokens:,}"
    labels = {key: label.format(tokens=tokens) for key, (label, _, _) in HTTP_ROWS.items()}
    wrk_ceiling, loadgen_ceiling = http.get(("wrk", "healthz")), http.get(("loadgen", "healthz"))
    # The harness's criterion: loadgen's ceiling against wrk's, in this run.
    loadgen_share = share(loadgen_ceiling, wrk_ceiling)
    client_bound = loadgen_share is not None and loadgen_share < CLIENT_BOUND_BELOW

    out = []
    title = "smoke run (--quick): not a measurement" if args.mode == "quick" else "full run"
    out.append(f"# credledger benchmarks — {title}")
    out.append("")
    out.append(f"- commit: `{args.commit}`; measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    out.append(f"- machine: {args.machine}; load clients, server and peer share it")
    out.append(
        f"- HTTP: {args.connections} keep-alive HTTP/1.1 connections, {args.warmup} s warm-up, "
        f"{args.duration} s measured per scenario; loadgen on {args.threads} threads; wrk: {args.wrk}; "
        f"{tokens} machine tokens in rotation"
    )
    out.append(f"- peer: {args.peer}")
    out.append("")
    out.append(
        "| scenario | req/s or value | ÷ healthz ceiling | p50 | p99 | p99.9 | errors | server RSS | target | met? |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for key in HTTP_ROWS:
        client, name = key
        flag = " †" if client == "loadgen" and client_bound else ""
        row = http_row(key, labels[key], http.get(key), http.get((client, "healthz")), flag)
        if key == ("loadgen", "healthz") and measured(http.get(key)):
            # This row is its own ceiling; its verdict is against wrk's.
            verdict = "—" if loadgen_share is None else ("**no**" if client_bound else "yes")
            of_wrk = "" if loadgen_share is None else f" ({loadgen_share:.2f} of wrk's)"
            cells = row.split(" | ")
            cells[2] = f"1.00{of_wrk}{flag}"
            cells[-1] = f"{verdict} |"
            row = " | ".join(cells)
        out.append(row)
    for name in STORE_ORDER:
        out.append(store_row(name, store.get(name)))

    def peer_ratio(ours, theirs):
        a, b = http.get(("loadgen", ours)), http.get(("loadgen", theirs))
        return a["rps"] / b["rps"] if measured(a) and measured(b) and b["rps"] else None

    out.append("")
    out.append("| target | value | met? |")
    out.append("|---|---|---|")
    result = http.get(("wrk", "machine-token-get"))
    fraction = share(result, wrk_ceiling)
    if fraction is None:
        reason = next((r["notMeasured"] for r in (result, wrk_ceiling) if r and "notMeasured" in r), None)
        value, verdict = f"not measured: {reason}" if reason else "not measured", "—"
    else:
        value = f"{fraction:.2f} of ceiling, p99 {ms(result['p99Ms'])}"
        verdict = met(machine_token_check, result, fraction)
    out.append(
        f"| {labels[('wrk', 'machine-token-get')]} ≥ {MACHINE_TOKEN_SHARE} of ceiling, "
        f"p99 ≤ {MACHINE_TOKEN_P99_MS:g} ms | {value} | {verdict} |"
    )
    absolute = f"{labels[('wrk', 'machine-token-get')]} ≥ {MACHINE_TOKEN_RPS // 1000}k req/s"
    if measured(result):
        out.append(f"| {absolute} | {number(result['rps'], 'req/s')} | {met(lambda r: r >= MACHINE_TOKEN_RPS, result['rps'])} |")
    else:
        out.append(f"| {absolute} | not measured | — |")
    for label, ours, theirs in (
        (f"machine-token request (loadgen) ≥ {PEER_FACTOR:g}× the peer's introspection", "machine-token-get", "peer-introspect-opaque"),
        (f"client_credentials ≥ {PEER_FACTOR:g}× the peer's grant", "client-credentials", "peer-client-credentials"),
    ):
        ratio = peer_ratio(ours, theirs)
        if ratio is None:
            out.append(f"| {label} | not measured | — |")
        else:
            out.append(f"| {label} | {ratio:.2f}×{' †' if client_bound else ''} | {met(lambda r: r >= PEER_FACTOR, ratio)} |")
    harness = f"harness: loadgen's /healthz ≥ {CLIENT_BOUND_BELOW:.2f} of wrk's"
    if loadgen_share is None:
        out.append(f"| {harness} | not measured | — |")
    else:
        verdict = "**no**: loadgen's figures are client-bound" if client_bound else "yes"
        out.append(f"| {harness} | {loadgen_share:.2f} | {verdict} |")
    out.append("")
    out.append("| ratio (credledger / peer, both measured by loadgen) | value |")
    out.append("|---|---|")
    for label, ours, theirs in RATIOS:
        ratio = peer_ratio(ours, theirs)
        out.append(f"| {label} | {'not measured' if ratio is None else f'{ratio:.2f}'} |")
    out.append("")
    out.append("Notes:")
    out.append("")
    out.append(
        "- req/s counts successful answers in the measured window; errors are non-2xx answers, "
        "introspections answering `active: false`, and transport failures. Latencies are of every answer."
    )
    out.append(
        "- ÷ healthz ceiling: the row's req/s over the same client's `/healthz` req/s in this run (wrk's rows "
        "over wrk's, every other row over loadgen's, the peer's included)."
    )
    if loadgen_share is None:
        out.append("- loadgen's `/healthz` could not be held against wrk's (one is not measured): its figures are unchecked.")
    elif client_bound:
        out.append(
            f"- † loadgen reached {loadgen_share:.2f} of wrk's `/healthz`, below {CLIENT_BOUND_BELOW:.2f}: its figures "
            "are client-bound (the load generator, not the server, limits them)."
        )
    else:
        out.append(f"- loadgen reached {loadgen_share:.2f} of wrk's `/healthz`: it is not the bottleneck.")
    out.append(
        "- server RSS: the highest VmRSS sampled (every 0.2 s) during the scenario, and VmHWM, the "
        "process's peak since it started, after it."
    )
    out.append(
        "- credledger records every accepted machine-token request (CredentialUsed) and every issued "
        "token (AccessTokenIssued) durably (SQLite WAL, synchronous=FULL, group commit) before it answers; "
        "introspection without `client_ip` records nothing. The peer keeps its tokens in memory "
        "(oidc-provider's MemoryAdapter) and writes nothing to disk."
    )
    out.append(
        "- peer access tokens: JWT signed with EdDSA (Ed25519) for client_credentials; its introspection is "
        "measured with an opaque token, since oidc-provider refuses to introspect JWT access tokens."
    )
    if args.events_db_bytes:
        out.append(f"- credledger's events.db after the HTTP scenarios: {args.events_db_bytes / 2**20:.0f} MiB")
    for key, label in labels.items():
        result = http.get(key)
        if not result:
            continue
        client = key[0]
        notes = []
        detail = dict(result.get("detail") or {})
        detail.pop("machineTokens", None)
        if "serverCpuCores" in result:
            cores = result["serverCpuCores"]
            per_request = f" ({cores / result['rps'] * 1e6:.0f} µs of server CPU per request)" if result.get("rps") else ""
            client_cores = detail.pop("loadgenCpuCores", detail.pop("clientCpuCores", None))
            client_cores = f", {client} {client_cores} cores" if client_cores is not None else ""
            notes.append(f"CPU: server {cores} cores{per_request}{client_cores}")
        outcomes = result.get("outcomes") or {}
        if result.get("errors"):
            notes.append("answers " + ", ".join(f"{name}: {count}" for name, count in outcomes.items()))
        for name, value in detail.items():
            notes.append(f"{name} {value}")
        if notes:
            out.append(f"- {label}: " + "; ".join(notes))
    for name in STORE_ORDER:
        result = store.get(name)
        if result and "notMeasured" in result:
            out.append(f"- store: {name}: {result['notMeasured']}")
        elif result and result.get("detail"):
            out.append(f"- store: {name}: {json.dumps(result['detail'])}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
