"""The compare run's tables: medians of REPS runs of each configuration,
ratios against the references, and each target of the performance issue
checked.

Usage: compare.py OUT REPS HALF_RATE
Reads OUT/<mode>-<name>-<i>.json (sluice-bench --out files) as written by
perf/bench.sh.
"""
import json
import os
import statistics
import sys

NAMES = {
    "direct": "direct to the mock",
    "nginx": "nginx",
    "pingora": "bare Pingora",
    "pingora-json": "bare Pingora, parsing JSON",
    "sluice": "Sluice passthrough",
    "features": "Sluice, features on",
    "translate": "Sluice, OpenAI → Anthropic",
}


def load_reps(out, reps, key):
    """Repetition number -> report, for the repetitions that left one."""
    runs = {}
    for i in range(1, reps + 1):
        path = f"{out}/{key}-{i}.json"
        if os.path.exists(path):
            runs[i] = json.load(open(path))
    return runs


def load(out, reps, key):
    return list(load_reps(out, reps, key).values())


def first_token(report):
    """Time to the first token event (to the first byte from older reports)."""
    return report.get("ttft") or report.get("ttfb") or {"p99_us": float("nan")}


# A generator whose sends ran later than this at p99 did not keep its
# schedule: its latencies measure its own stall, not the proxy.
LAG_LIMIT_US = 1000


def lag_p99(report):
    return (report.get("send_lag") or {}).get("p99_us", float("nan"))


def added_ttft(direct, sluice):
    """Sluice's added TTFT p99 over direct (µs): the median of Sluice's
    minus the median of direct's, over the repetitions in which the
    generator kept its schedule in both runs; and how many those were.
    `direct`, `sluice`: repetition number -> report."""
    kept = [(direct[i], sluice[i]) for i in direct.keys() & sluice.keys()
            if direct[i].get("latency") and sluice[i].get("latency")
            and lag_p99(direct[i]) <= LAG_LIMIT_US and lag_p99(sluice[i]) <= LAG_LIMIT_US]
    if not kept:
        return float("nan"), 0
    d = statistics.median(first_token(r)["p99_us"] for r, _ in kept)
    s = statistics.median(first_token(r)["p99_us"] for _, r in kept)
    return s - d, len(kept)


def med(runs, f):
    vals = [f(r) for r in runs if r.get("latency")]
    return statistics.median(vals) if vals else float("nan")


def table(out, reps, mode, unit):
    rows = {}
    for name in NAMES:
        runs = load(out, reps, f"{mode}-{name}")
        if runs:
            rows[name] = runs
    rps = {n: med(r, lambda x: x["rps"]) for n, r in rows.items()}
    ttfb = mode == "stream"
    print(f"| {mode} | {unit} | p50 µs | p99 µs |" + (" TTFT p99 µs |" if ttfb else "")
          + " errors | vs nginx | vs bare Pingora | vs Sluice passthrough |")
    print("|---" * (8 + ttfb) + "|")
    for n, runs in rows.items():
        line = (f"| {NAMES[n]} | {rps[n]:,.0f} | {med(runs, lambda x: x['latency']['p50_us']):,.0f} | "
                f"{med(runs, lambda x: x['latency']['p99_us']):,.0f} |")
        if ttfb:
            line += f" {med(runs, lambda x: first_token(x)['p99_us']):,.0f} |"
        errors = sum(sum(r["errors"].values()) for r in runs)
        line += f" {errors} |"
        for base in ("nginx", "pingora", "sluice"):
            line += f" {rps[n] / rps[base]:.2f} |" if base in rps and n != base else " |"
        print(line)
    print()
    return rps


def main(argv):
    out, reps, half = argv[0], int(argv[1]), float(argv[2])
    plain = table(out, reps, "plain", "req/s")
    stream = table(out, reps, "stream", "streams/s")
    # nginx and bare Pingora too: at concurrency 1 every hop between the
    # two cores wakes an idle one, which no proxy avoids.
    c1 = {n: r for n in ("direct", "nginx", "pingora", "sluice") if (r := load(out, reps, f"c1-{n}"))}
    p99 = {n: med(r, lambda x: x["latency"]["p99_us"]) for n, r in c1.items()}
    p50 = {n: med(r, lambda x: x["latency"]["p50_us"]) for n, r in c1.items()}
    print("| concurrency 1 | p50 µs | p99 µs | p99 added over direct |")
    print("|---|---|---|---|")
    nan = float("nan")
    for n in c1:
        added = f"{p99[n] - p99.get('direct', nan):,.0f}" if n != "direct" else ""
        print(f"| {NAMES[n]} | {p50[n]:,.0f} | {p99[n]:,.0f} | {added} |")
    print()
    half_reps = {n: load_reps(out, reps, f"half-{n}") for n in ("direct", "nginx", "pingora", "sluice")}
    half_runs = {n: list(r.values()) for n, r in half_reps.items()}
    ttft = {n: med(r, lambda x: first_token(x)["p99_us"]) for n, r in half_runs.items()}
    # From each request's actual send as well: in open loop a request can
    # wait for its connection, and that wait is in the intended-time figure.
    sent = {n: med(r, lambda x: (x.get("ttft_sent") or {}).get("p99_us", nan))
            for n, r in half_runs.items()}
    lag = {n: med(r, lag_p99) for n, r in half_runs.items()}
    print(f"| streams open-loop at {half:,.0f}/s (half of Sluice's saturation) | TTFT p99 µs | "
          "added over direct | from the actual send, p99 µs | send lag p99 µs |")
    print("|---|---|---|---|---|")
    for n, runs in half_runs.items():
        if not runs:
            continue
        added = f"{ttft[n] - ttft['direct']:,.0f}" if n != "direct" else ""
        print(f"| {NAMES[n]} | {ttft[n]:,.0f} | {added} | {sent[n]:,.0f} | {lag[n]:,.0f} |")
    print()
    # A configuration whose runs all failed has no row: its checks say so.
    def ratio(rows, a, b):
        return rows.get(a, nan) / rows.get(b, nan)
    checks = [
        ("passthrough ≥ 1.0× bare Pingora", ratio(plain, "sluice", "pingora"), 1.0),
        ("passthrough ≥ 0.4× nginx", ratio(plain, "sluice", "nginx"), 0.4),
        ("features on ≥ 0.85× passthrough", ratio(plain, "features", "sluice"), 0.85),
        ("streams ≥ 0.9× bare Pingora", ratio(stream, "sluice", "pingora"), 0.9),
        ("translation ≥ 0.8× passthrough", ratio(plain, "translate", "sluice"), 0.8),
    ]
    print("| target | measured | met |")
    print("|---|---|---|")
    for label, value, goal in checks:
        print(f"| {label} | {value:.2f}× | {'yes' if value >= goal else 'no'} |")
    added, kept = added_ttft(half_reps["direct"], half_reps["sluice"])
    label = "added TTFT p99 ≤ 0.5 ms at half saturation"
    if kept == 0:
        print(f"| {label} | no verdict: in no repetition did the generator keep its schedule "
              f"(send lag p99 ≤ {LAG_LIMIT_US / 1000:g} ms) | no verdict |")
    else:
        kept_note = "" if kept == reps else f", {kept} of {reps} repetitions (in the others the generator fell behind)"
        print(f"| {label} | {added / 1000:.2f} ms{kept_note} | {'yes' if added <= 500 else 'no'} |")
    added = p99.get("sluice", nan) - p99.get("direct", nan)
    print(f"| added p99 ≤ 200 µs at concurrency 1 | {added:,.0f} µs | {'yes' if added <= 200 else 'no'} |")
    print(f"\n(medians of {reps} runs; Sluice passthrough {plain.get('sluice', nan):,.0f} req/s on one core)")


if __name__ == "__main__":
    main(sys.argv[1:])
