"""Medians of a benchmark script's runs as a markdown table.

Usage: summary.py OUT REPS NAME=LABEL... [--vs NAME]
Reads OUT/NAME-1.json … OUT/NAME-REPS.json (sluice-bench --out files) for
each NAME and prints req/s, p50, p99 and errors per row; with --vs, also
each row's req/s as a ratio of that row's, and the time each request
takes more than there (1/req/s apart, on the one core Sluice has).
"""
import json
import statistics
import sys


def main(argv):
    out, reps = argv[0], int(argv[1])
    rest = argv[2:]
    base = None
    if "--vs" in rest:
        i = rest.index("--vs")
        base = rest[i + 1]
        rest = rest[:i] + rest[i + 2 :]
    rows = [r.split("=", 1) if "=" in r else (r, r) for r in rest]
    runs = {n: [json.load(open(f"{out}/{n}-{i}.json")) for i in range(1, reps + 1)] for n, _ in rows}
    med = lambda name, f: statistics.median(f(r) for r in runs[name])
    rps = {n: med(n, lambda r: r["rps"]) for n, _ in rows}
    head = "| | req/s | p50 µs | p99 µs | errors |"
    if base:
        head += f" vs {dict(rows)[base]} | µs per request added |"
    print(head)
    print("|---" * (5 + 2 * bool(base)) + "|")
    for n, label in rows:
        line = (
            f"| {label} | {rps[n]:.0f} | {med(n, lambda r: r['latency']['p50_us']):.0f} | "
            f"{med(n, lambda r: r['latency']['p99_us']):.0f} | "
            f"{sum(sum(r['errors'].values()) for r in runs[n])} |"
        )
        if base:
            line += f" {rps[n] / rps[base]:.2f} | {1e6 / rps[n] - 1e6 / rps[base]:+.1f} |"
        print(line)
    print(f"\n(medians of {reps} runs)")


if __name__ == "__main__":
    main(sys.argv[1:])
