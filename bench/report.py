#!/usr/bin/env python3
"""Prints bench/run.sh's results as a Markdown table against the targets of docs/performance.md.

Input: the NDJSON file run.sh collects, one result per line: loadgen's JSON lines (kind "http",
with the server's memory added) and storebench's (kind "store"). Standard library only.
"""

import argparse
import json
import time

# docs/performance.md#targets. Each target: (text, check of a result, or None when none is set).
HTTP_TARGETS = {
    "healthz": ("ceiling: axum hello ≈ 124k req/s", None),
    "machine-token-get": ("≥ 40k req/s, p99 ≤ 5 ms", lambda r: r["rps"] >= 40_000 and (r["p99Ms"] or 1e9) <= 5),
    "client-credentials": ("≥ 20k req/s", lambda r: r["rps"] >= 20_000),
    "jwt-bearer": ("none set", None),
    "introspect-machine-token": ("none set", None),
    "introspect-jwt": ("none set", None),
    "mixed": ("none set", None),
    "peer-client-credentials": ("reference ≈ 6.7k req/s", None),
    "peer-introspect-opaque": ("reference ≈ 10k req/s", None),
}
# Store targets: (text, unit the check expects, check of the value, or None).
STORE_TARGETS = {
    "appends": ("≥ 200k events/s", "events/s", lambda v: v >= 200_000),
    "rebuild": ("≥ 300k events/s", "events/s", lambda v: v >= 300_000),
    "verify": ("≥ 1M events/s", "events/s", lambda v: v >= 1_000_000),
    "audit-query": ("none set", None, None),
    "hot-index": ("≤ 1 KiB per credential", "bytes/credential", lambda v: v <= 1024),
}
HTTP_ORDER = list(HTTP_TARGETS)
STORE_ORDER = list(STORE_TARGETS)
# (label, credledger scenario, peer scenario)
RATIOS = [
    ("client_credentials grant", "client-credentials", "peer-client-credentials"),
    ("introspection: credledger JWT / peer opaque token", "introspect-jwt", "peer-introspect-opaque"),
    ("introspection: credledger machine token / peer opaque token", "introspect-machine-token", "peer-introspect-opaque"),
    ("machine-token request (durable) / peer introspection (§10's comparison)", "machine-token-get", "peer-introspect-opaque"),
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


def met(check, value):
    if check is None:
        return "—"
    return "yes" if check(value) else "**no**"


def http_row(name, result):
    target, check = HTTP_TARGETS.get(name, ("none set", None))
    if result is None:
        return f"| {name} | not measured | — | — | — | — | — | {target} | — |"
    if "failed" in result:
        reason = result["failed"].replace("|", "\\|")
        return f"| {name} | failed: {reason} | — | — | — | — | {mib(result.get('serverRssKiB'))} | {target} | — |"
    memory = f"{mib(result['serverRssKiB'])} (peak {mib(result['serverHwmKiB'])})"
    return (
        f"| {name} | {number(result['rps'], 'req/s')} | {ms(result['p50Ms'])} | {ms(result['p99Ms'])} "
        f"| {ms(result['p999Ms'])} | {errors(result)} | {memory} | {target} | {met(check, result)} |"
    )


def store_row(name, result):
    target, unit, check = STORE_TARGETS.get(name, ("none set", None, None))
    if result is None or "notMeasured" in result:
        return f"| store: {name} | not measured | — | — | — | — | — | {target} | — |"
    detail = result.get("detail") or {}
    value = number(result["value"], result.get("unit", ""))
    cells = [detail.get(key) for key in ("p50Ms", "p99Ms", "p999Ms")]
    latencies = " | ".join(ms(cell) if isinstance(cell, (int, float)) else "—" for cell in cells)
    verdict = met(check, result["value"]) if result.get("unit") == unit or check is None else f"unit is not {unit}"
    return f"| store: {name} | {value} | {latencies} | — | — | {target} | {verdict} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results")
    for option in ("commit", "machine", "mode", "duration", "warmup", "connections", "threads", "peer"):
        parser.add_argument(f"--{option}", default="?")
    parser.add_argument("--events-db-bytes", type=int, default=0)
    args = parser.parse_args()

    results = {}
    with open(args.results, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                result = json.loads(line)
                results[result["scenario"]] = result

    out = []
    title = "smoke run (--quick): not a measurement" if args.mode == "quick" else "full run"
    out.append(f"# credledger benchmarks — {title}")
    out.append("")
    out.append(f"- commit: `{args.commit}`; measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    out.append(f"- machine: {args.machine}; load generator, server and peer share it")
    out.append(
        f"- HTTP: {args.connections} keep-alive HTTP/1.1 connections, {args.warmup} s warm-up, "
        f"{args.duration} s measured per scenario, load generator on {args.threads} threads"
    )
    out.append(f"- peer: {args.peer}")
    out.append("")
    out.append("| scenario | req/s or value | p50 | p99 | p99.9 | errors | server RSS | target | met? |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for name in HTTP_ORDER:
        out.append(http_row(name, results.get(name)))
    for name in STORE_ORDER:
        out.append(store_row(name, results.get(name)))
    out.append("")
    out.append("| ratio (credledger / peer) | value |")
    out.append("|---|---|")
    for label, ours, theirs in RATIOS:
        a, b = results.get(ours), results.get(theirs)
        if a and b and "rps" in a and "rps" in b and b["rps"]:
            out.append(f"| {label} | {a['rps'] / b['rps']:.2f} |")
        else:
            out.append(f"| {label} | not measured |")
    out.append("")
    out.append("Notes:")
    out.append("")
    out.append(
        "- req/s counts successful answers in the measured window; errors are non-2xx answers, "
        "introspections answering `active: false`, and transport failures. Latencies are of every answer."
    )
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
    for name in HTTP_ORDER:
        result = results.get(name)
        if not result:
            continue
        notes = []
        detail = dict(result.get("detail") or {})
        if "serverCpuCores" in result:
            cores = result["serverCpuCores"]
            per_request = f" ({cores / result['rps'] * 1e6:.0f} µs of server CPU per request)" if result.get("rps") else ""
            loadgen = detail.pop("loadgenCpuCores", None)
            loadgen = f", loadgen {loadgen} cores" if loadgen is not None else ""
            notes.append(f"CPU: server {cores} cores{per_request}{loadgen}")
        outcomes = result.get("outcomes") or {}
        if result.get("errors"):
            notes.append("answers " + ", ".join(f"{key}: {count}" for key, count in outcomes.items()))
        for key, value in detail.items():
            notes.append(f"{key} {value}")
        if notes:
            out.append(f"- {name}: " + "; ".join(notes))
    for name in STORE_ORDER:
        result = results.get(name)
        if result and "notMeasured" in result:
            out.append(f"- store: {name}: {result['notMeasured']}")
        elif result and result.get("detail"):
            out.append(f"- store: {name}: {json.dumps(result['detail'])}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
