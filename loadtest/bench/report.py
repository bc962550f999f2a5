#!/usr/bin/env python3
"""Helpers of loadtest/bench/passthrough.sh (stdlib only).

  report.py meta KEY=VALUE ...                 -> JSON object on stdout
  report.py record --wrk FILE --target T ...   -> one JSON line (a run) on stdout
  report.py finalize --runs F --meta F --out F [--md F] [--partial]
                                               -> writes the result JSON, prints markdown
  report.py table RESULT.json                  -> prints the markdown of a saved result
"""

import argparse
import json
import re
import statistics
import sys

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
SIZE_UNITS = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(text):
    """The numbers of one `wrk --latency` report."""
    out = {"non2xx": 0, "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        raise ValueError("no Requests/sec line in wrk output")
    out["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)([KMG]?B) read", text)
    if m:
        out["requests"] = int(m.group(1))
        out["wrk_seconds"] = to_ms(m.group(2) + m.group(3)) / 1000.0
        out["bytes_read"] = int(float(m.group(4)) * SIZE_UNITS[m.group(5)])
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+([\d.]+(?:us|ms|s|m|h))\s*$" % pct, text, re.M)
        if m:
            out[f"p{pct}_ms"] = to_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    return out


def cmd_meta(args):
    meta = {}
    for kv in args.pairs:
        key, _, value = kv.partition("=")
        meta[key] = value
    json.dump(meta, sys.stdout)
    print()


def cmd_record(args):
    with open(args.wrk) as f:
        text = f.read()
    run = {
        "target": args.target,
        "size": args.size,
        "workers": args.workers,
        "round": args.round,
        "duration_s": args.duration,
    }
    run.update(parse_wrk(text))
    tck = args.clk_tck
    run["sut_cpu_s"] = args.sut_ticks / tck
    run["origin_cpu_s"] = args.origin_ticks / tck
    run["wrk_cpu_s"] = args.wrk_cpu_ms / 1000.0
    run["machine_busy_s"] = args.machine_ticks / tck  # user+nice+system of all CPUs
    run["softirq_s"] = args.softirq_ticks / tck  # irq+softirq: mostly loopback TCP of this run
    run["quiet_busy_pct"] = args.quiet_busy_pct  # machine busy (% of a core) just before the run
    run["quiet_waited_s"] = args.quiet_waited
    # CPU used by anything else on the machine during this run (noise). Tasks are charged for
    # the softirq work done in their context, which /proc/stat books as softirq, so the
    # machine side includes softirq; on a quiet machine this comes out near 0 (± tick noise).
    own = run["origin_cpu_s"] + run["wrk_cpu_s"] + (run["sut_cpu_s"] if args.target != "direct" else 0)
    run["other_cpu_s"] = round(run["machine_busy_s"] + run["softirq_s"] - own, 2)
    run["peak_rss_kib"] = args.rss_kib
    reqs = run.get("requests") or run["rps"] * args.duration
    run["req_per_cpu_s"] = reqs / run["sut_cpu_s"] if run["sut_cpu_s"] > 0 else None
    run["cpu_us_per_req"] = run["sut_cpu_s"] * 1e6 / reqs if reqs else None
    run["wrk_raw"] = text
    json.dump(run, sys.stdout)
    print()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["size"], int(r["workers"]), r["target"]), []).append(r)
    summary = []
    for (size, workers, target), rs in groups.items():
        rps = [r["rps"] for r in rs]
        summary.append({
            "size": size,
            "workers": workers,
            "target": target,
            "rounds": len(rs),
            "rps": median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "p50_ms": median([r.get("p50_ms") for r in rs]),
            "p99_ms": median([r.get("p99_ms") for r in rs]),
            "sut_cpu_s": median([r["sut_cpu_s"] for r in rs]),
            "origin_cpu_s": median([r["origin_cpu_s"] for r in rs]),
            "other_cpu_s": median([r["other_cpu_s"] for r in rs]),
            "req_per_cpu_s": median([r["req_per_cpu_s"] for r in rs]),
            "cpu_us_per_req": median([r["cpu_us_per_req"] for r in rs]),
            "peak_rss_kib": median([r["peak_rss_kib"] for r in rs]),
            "errors": sum(r["non2xx"] + sum(r["socket_errors"].values()) for r in rs),
        })
    return summary


def size_key(size):
    m = re.fullmatch(r"(\d+)([kmg]?)", size.lower())
    if not m:
        return (1 << 62, size)
    return (int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)], size)


TARGET_ORDER = {"direct": 0, "nginx": 1, "weir": 2}


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def markdown(result):
    meta, summary = result["meta"], result["summary"]
    summary = sorted(summary, key=lambda s: (size_key(s["size"]), s["workers"], TARGET_ORDER.get(s["target"], 9)))
    lines = []
    lines.append(
        f"{meta.get('date', '?')} · {meta.get('nproc', '?')} × {meta.get('cpu_model', '?')} · "
        f"wrk -t1 -c{meta.get('connections', '?')} -d{meta.get('duration', '?')}s, "
        f"{meta.get('rounds', '?')} alternating rounds, medians · origin {meta.get('origin_threads', '?')} threads · "
        f"weir {meta.get('weir_rev', '?')} · {meta.get('nginx_version', '?')}"
        + (" · **PARTIAL (interrupted)**" if result.get("partial") else "")
    )
    lines.append("")
    lines.append("| size | workers | target | rps (min–max) | p50 ms | p99 ms | SUT CPU s | req / CPU-s | CPU µs / req | peak RSS MiB | errors | other CPU s |")
    lines.append("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in summary:
        lines.append(
            f"| {s['size']} | {s['workers']} | {s['target']} | "
            f"{s['rps']:,.0f} ({s['rps_min']:,.0f}–{s['rps_max']:,.0f}) | "
            f"{fmt(s['p50_ms'], '.2f')} | {fmt(s['p99_ms'], '.2f')} | {fmt(s['sut_cpu_s'], '.2f')} | "
            f"{fmt(s['req_per_cpu_s'], ',.0f')} | {fmt(s['cpu_us_per_req'], '.1f')} | "
            f"{fmt(s['peak_rss_kib'] and s['peak_rss_kib'] / 1024, '.1f')} | {s['errors']} | {fmt(s['other_cpu_s'], '.1f')} |"
        )
    lines.append("")
    lines.append("weir ÷ nginx (ratio of medians; rps and req/CPU-s: higher is better for weir, p99 and RSS: lower is better):")
    lines.append("")
    lines.append("| size | workers | rps | p99 | req / CPU-s | CPU µs / req | peak RSS |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    by = {(s["size"], s["workers"], s["target"]): s for s in summary}
    seen = []
    for s in summary:
        key = (s["size"], s["workers"])
        if key in seen:
            continue
        seen.append(key)
        w, n = by.get(key + ("weir",)), by.get(key + ("nginx",))
        if not w or not n:
            continue
        cells = [
            ratio(w["rps"], n["rps"]),
            ratio(w["p99_ms"], n["p99_ms"]),
            ratio(w["req_per_cpu_s"], n["req_per_cpu_s"]),
            ratio(w["cpu_us_per_req"], n["cpu_us_per_req"]),
            ratio(w["peak_rss_kib"], n["peak_rss_kib"]),
        ]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(fmt(c, ".2f") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def cmd_finalize(args):
    with open(args.meta) as f:
        meta = json.load(f)
    runs = []
    with open(args.runs) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    result = {"meta": meta, "partial": args.partial, "summary": summarize(runs), "runs": runs}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    md = markdown(result)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    sys.stdout.write(md)


def cmd_table(args):
    with open(args.result) as f:
        sys.stdout.write(markdown(json.load(f)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("meta")
    m.add_argument("pairs", nargs="*")
    m.set_defaults(func=cmd_meta)

    r = sub.add_parser("record")
    r.add_argument("--wrk", required=True)
    r.add_argument("--target", required=True)
    r.add_argument("--size", required=True)
    r.add_argument("--workers", type=int, required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--clk-tck", type=float, default=100.0)
    r.add_argument("--sut-ticks", type=int, required=True)
    r.add_argument("--origin-ticks", type=int, required=True)
    r.add_argument("--machine-ticks", type=int, required=True)
    r.add_argument("--softirq-ticks", type=int, required=True)
    r.add_argument("--quiet-busy-pct", type=int, required=True)
    r.add_argument("--quiet-waited", type=int, required=True)
    r.add_argument("--wrk-cpu-ms", type=int, required=True)
    r.add_argument("--rss-kib", type=int, required=True)
    r.set_defaults(func=cmd_record)

    f = sub.add_parser("finalize")
    f.add_argument("--runs", required=True)
    f.add_argument("--meta", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--md")
    f.add_argument("--partial", action="store_true")
    f.set_defaults(func=cmd_finalize)

    t = sub.add_parser("table")
    t.add_argument("result")
    t.set_defaults(func=cmd_table)

    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
