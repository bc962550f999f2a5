#!/usr/bin/env python3
"""Helpers of loadtest/bench/passthrough.sh and loadtest/bench/run.sh (stdlib only; the plot
needs matplotlib).

  report.py meta KEY=VALUE ...                 -> JSON object on stdout
  report.py meta-add META.json KEY=VALUE ...   -> adds keys to a meta file
  report.py record --wrk FILE --target T ...   -> one JSON line (a run) on stdout
                  (or --out-file FILE --client wrk|oha [--scenario S])
  report.py kv KEY=VALUE ...                   -> one JSON line (a memory run) on stdout
  report.py line RUNS.jsonl                    -> a one-line summary of the last run
  report.py finalize --runs F --meta F --out F [--md F] [--partial]
                                               -> writes the result JSON, prints markdown
  report.py table RESULT.json                  -> prints the markdown of a saved result
  report.py plot RESULT.json OUT.png           -> rps and p99 per scenario (matplotlib)
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


def parse_oha(text):
    """The numbers of one `oha --output-format json` report (latencies in seconds)."""
    j = json.loads(text)
    summ = j["summary"]
    codes = {str(k): int(v) for k, v in (j.get("statusCodeDistribution") or {}).items()}
    errors = {str(k): int(v) for k, v in (j.get("errorDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if k.startswith(("2", "3")))
    out = {
        "non2xx": sum(codes.values()) - ok,
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "client_errors": errors,
        "requests": sum(codes.values()),
        "rps": float(summ.get("requestsPerSec") or 0.0),
        "wrk_seconds": float(summ.get("total") or 0.0),
        "bytes_read": int(summ.get("totalData") or 0),
    }
    # oha counts requests still in flight when -z ends as "aborted due to deadline": not errors.
    out["socket_errors"]["read"] = sum(v for k, v in errors.items() if "deadline" not in k)
    lat = j.get("latencyPercentiles") or {}
    for pct in ("50", "75", "90", "99"):
        v = lat.get(f"p{pct}")
        if v is not None:
            out[f"p{pct}_ms"] = float(v) * 1000.0
    return out


def autotype(value):
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def cmd_meta_add(args):
    with open(args.meta) as f:
        meta = json.load(f)
    for kv in args.pairs:
        key, _, value = kv.partition("=")
        meta[key] = value
    with open(args.meta, "w") as f:
        json.dump(meta, f)


def cmd_kv(args):
    run = {}
    for kv in args.pairs:
        key, _, value = kv.partition("=")
        run[key] = autotype(value)
    json.dump(run, sys.stdout)
    print()


def cmd_line(args):
    with open(args.runs) as f:
        r = json.loads(f.read().splitlines()[-1])
    kind = r.get("kind")
    if kind == "idle":
        c = r.get("client") or {}
        print("  %-10s %-10s w%s  %s clients open (%s failed, %s closed by server): RSS %.1f -> %.1f MiB, PSS %.1f MiB, fds %s"
              % (r["scenario"], r["target"], r["workers"], c.get("opened"), c.get("failed"), c.get("closed_by_server"),
                 r["rss_before_kib"] / 1024, r["rss_kib"] / 1024, r["pss_kib"] / 1024, r["fds"]))
        return
    if kind == "stream":
        print("  %-10s %-10s w%s  %s: RSS before %.1f, max %.1f, after %.1f MiB"
              % (r["scenario"], r["target"], r["workers"], r["result"], r["rss_before_kib"] / 1024,
                 r["rss_max_kib"] / 1024, r["rss_after_kib"] / 1024))
        return
    err = r["non2xx"] + sum(r["socket_errors"].values())
    print("  %-10s %-10s w%s r%s  %9.0f rps  p50 %7.2f ms  p99 %7.2f ms  cpu %5.2f s  %6.2f cpu-s/10k  rss %5.1f MiB  other %4.1f s  (idle wait %ss, %s%% busy)%s" % (
        r.get("scenario", r["size"]), r["target"], r["workers"], r["round"], r["rps"], r.get("p50_ms") or 0,
        r.get("p99_ms") or 0, r["sut_cpu_s"], r.get("cpu_s_per_10k") or 0, r["peak_rss_kib"] / 1024,
        r["other_cpu_s"], r["quiet_waited_s"], r["quiet_busy_pct"], ("  ERRORS %d" % err) if err else ""))


def cmd_meta(args):
    meta = {}
    for kv in args.pairs:
        key, _, value = kv.partition("=")
        meta[key] = value
    json.dump(meta, sys.stdout)
    print()


def cmd_record(args):
    path = args.out_file or args.wrk
    if not path:
        sys.exit("report.py record: --wrk or --out-file is required")
    with open(path) as f:
        text = f.read()
    run = {
        "client": args.client,
        "target": args.target,
        "size": args.size,
        "workers": args.workers,
        "round": args.round,
        "duration_s": args.duration,
    }
    if args.scenario:
        run["scenario"] = args.scenario
    if args.t_end is not None:
        run["t_end_s"] = args.t_end
    run.update(parse_oha(text) if args.client == "oha" else parse_wrk(text))
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
    run["cpu_s_per_10k"] = run["sut_cpu_s"] * 1e4 / reqs if reqs else None
    run["wrk_raw"] = text
    json.dump(run, sys.stdout)
    print()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs):
    groups = {}
    for r in runs:
        if r.get("kind") or r.get("scenario") == "soak":
            continue
        groups.setdefault((r.get("scenario") or r["size"], int(r["workers"]), r["target"]), []).append(r)
    summary = []
    for (size, workers, target), rs in groups.items():
        rps = [r["rps"] for r in rs]
        summary.append({
            "scenario": rs[0].get("scenario"),
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
            "cpu_s_per_10k": median([r.get("cpu_s_per_10k") for r in rs]),
            "quiet_busy_pct": median([r.get("quiet_busy_pct") for r in rs]),
            "quiet_waited_s": max(r.get("quiet_waited_s") or 0 for r in rs),
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


# ---------------------------------------------------------------- run.sh (the suite)

SCENARIO_ORDER = ["pass", "hit", "hitdisk", "image-host", "newconn", "h2-tls", "limiter"]
SUITE_TARGETS = {"nginx": 0, "weir": 1, "weir-limit": 2}


def scenario_key(name):
    for i, prefix in enumerate(SCENARIO_ORDER):
        if name == prefix or name.startswith(prefix + "-"):
            return (i, size_key(name[len(prefix) + 1:] or "0"))
    return (99, (0, name))


def target_of(scenario, workers):
    """(the rps target as weir/nginx, description) for a scenario: issue 15's targets, and
    its goal beyond them (≥ 1.0× nginx everywhere) for the other scenarios."""
    if scenario == "pass-1k":
        return (0.75, "rps ≥ 0.75× nginx") if workers == 1 else (0.7, "rps ≥ 0.7× nginx")
    if scenario == "hit-50k":
        return 1.0, "rps ≥ 1.0× nginx (memory tier on)"
    if scenario == "hitdisk-50k":
        return 0.8, "rps ≥ 0.8× nginx (memory tier off)"
    if scenario == "image-host":
        return 1.2, "rps ≥ 1.2× nginx, p99 ≤ nginx"
    if scenario == "limiter":
        return 0.97, "limit_req costs ≤ 3 % rps"
    if scenario.startswith(("pass-", "hit-", "hitdisk-", "newconn-", "h2-tls-")):
        return 1.0, "goal: ≥ 1.0× nginx"
    return None, "–"


def suite_markdown(result):
    meta, summary, runs = result["meta"], result["summary"], result["runs"]
    lines = []
    date = meta.get("date", "?")
    mem = meta.get("mem_total_kib")
    lines.append(
        f"{date} · {meta.get('nproc', '?')} × {meta.get('cpu_model', '?')}"
        + (f", {int(mem) / 1048576:.0f} GiB" if mem else "")
        + f" · Linux {meta.get('kernel', '?')} · weir {meta.get('weir_rev', '?')} · {meta.get('nginx_version', '?')}"
        + f" · wrk {meta.get('wrk_version', '?')} · {meta.get('oha_version', 'oha ?')}"
        + (" · **PARTIAL (interrupted)**" if result.get("partial") else "")
    )
    lines.append("")
    if meta.get("suite") != "soak":
      lines.append(
        f"wrk -t1 -c{meta.get('connections')} -d{meta.get('duration')}s --latency (oha -c{meta.get('h2_conns')} "
        f"-p{meta.get('h2_streams')} --http2 for h2-tls), {meta.get('rounds')} alternating rounds, medians; "
        f"origin {meta.get('origin_threads')} threads"
      )
      lines.append("")
    if summary:
        summary = sorted(summary, key=lambda s: (s["workers"], scenario_key(s["size"]), SUITE_TARGETS.get(s["target"], 9)))
        lines.append("| scenario | workers | target | rps (min–max) | p50 ms | p99 ms | CPU s / 10k req | peak RSS MiB | errors | other CPU s |")
        lines.append("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s in summary:
            lines.append(
                f"| {s['size']} | {s['workers']} | {s['target']} | "
                f"{s['rps']:,.0f} ({s['rps_min']:,.0f}–{s['rps_max']:,.0f}) | "
                f"{fmt(s['p50_ms'], '.2f')} | {fmt(s['p99_ms'], '.2f')} | {fmt(s.get('cpu_s_per_10k'), '.2f')} | "
                f"{fmt(s['peak_rss_kib'] and s['peak_rss_kib'] / 1024, '.1f')} | {s['errors']} | {fmt(s['other_cpu_s'], '.1f')} |"
            )
        lines.append("")
        lines.append("weir ÷ nginx, ratios of the medians (limiter: weir with limit_req ÷ weir without); "
                     "rps: higher is better for weir, p99, CPU and RSS: lower is better:")
        lines.append("")
        lines.append("| scenario | workers | rps | p99 | CPU / req | peak RSS | target (issue 15) | rps target met | p99 ≤ nginx |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
        for row in ratio_rows(summary):
            lines.append(
                f"| {row['scenario']} | {row['workers']} | {fmt(row['rps'], '.2f')} | {fmt(row['p99'], '.2f')} | "
                f"{fmt(row['cpu'], '.2f')} | {fmt(row['rss'], '.2f')} | {row['target_text']} | "
                f"{row['met']} | {row['p99_met']} |"
            )
        lines.append("")
        scaling = scaling_rows(summary)
        if scaling:
            lines.append("Worker scaling, each server's rps with 2 workers ÷ its rps with 1 (target: weir ≥ 1.0 on pass-1k):")
            lines.append("")
            lines.append("| scenario | nginx | weir |")
            lines.append("| --- | ---: | ---: |")
            for sc, ng, we in scaling:
                lines.append(f"| {sc} | {fmt(ng, '.2f')} | {fmt(we, '.2f')} |")
            lines.append("")
    ih = meta.get("image_host") or {}
    wl = meta.get("image_host_workload")
    if isinstance(wl, str):
        try:
            wl = json.loads(wl)
        except ValueError:
            wl = None
    if wl:
        lines.append(
            f"image-host workload: {wl.get('images')} images, {wl.get('catalog_bytes', 0) / 2**20:,.0f} MiB in all "
            f"(median {wl.get('median_image_bytes', 0) / 1024:.0f} KiB, mean {wl.get('mean_image_bytes', 0) / 1024:.0f} KiB), "
            f"Zipf s = {wl.get('zipf_s')}, {100 * float(wl.get('miss_fraction', 0)):.0f} % never-seen uploads "
            f"(expected hit rate {100 * float(wl.get('expected_hit_rate', 0)):.1f} %)."
        )
        rates = []
        for key in sorted(ih):
            if key.startswith("sample_"):
                for target, v in sorted(ih[key].items()):
                    rates.append(f"{key.replace('sample_', '').replace('_', ' ')}, {target}: {100 * v.get('hit_rate', 0):.1f} % HIT")
        if rates:
            lines.append("Measured hit rates (2,000 requests of the sequence, X-Cache-Status): " + "; ".join(rates) + ".")
        lines.append("")
    idle = [r for r in runs if r.get("kind") == "idle"]
    if idle:
        lines.append("Idle keep-alive clients (each sent one request, then stays open; measured after "
                     f"{meta.get('idle_hold')} s; nginx: master + workers; target: weir RSS ≤ 60 MiB):")
        lines.append("")
        lines.append("| clients | workers | target | open | closed by server | RSS before MiB | RSS MiB | PSS MiB | peak RSS MiB | fds | weir ≤ 60 MiB |")
        lines.append("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in sorted(idle, key=lambda r: (r["workers"], SUITE_TARGETS.get(r["target"], 9))):
            c = r.get("client") or {}
            met = "–"
            if r["target"] == "weir":
                met = "met" if r["rss_kib"] <= 60 * 1024 else "NOT met"
            lines.append(
                f"| {r['clients']:,} | {r['workers']} | {r['target']} | {c.get('opened', '?'):,} | {c.get('closed_by_server', '?')} | "
                f"{r['rss_before_kib'] / 1024:.1f} | {r['rss_kib'] / 1024:.1f} | {r['pss_kib'] / 1024:.1f} | "
                f"{r['hwm_kib'] / 1024:.1f} | {r['fds']:,} | {met} |"
            )
        lines.append("")
    stream = [r for r in runs if r.get("kind") == "stream"]
    if stream:
        lines.append(f"Streaming one large object through (curl --limit-rate {meta.get('stream_rate')}; RSS sampled every 0.25 s; "
                     "nginx: workers; target: flat RSS):")
        lines.append("")
        lines.append("| object | workers | target | result | RSS before MiB | RSS max MiB | RSS after MiB | growth MiB | flat (≤ 8 MiB growth) |")
        lines.append("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |")
        for r in sorted(stream, key=lambda r: (r["workers"], SUITE_TARGETS.get(r["target"], 9))):
            growth = (r["rss_max_kib"] - r["rss_before_kib"]) / 1024
            lines.append(
                f"| {r['bytes'] / 2**20:,.0f} MiB | {r['workers']} | {r['target']} | {r['result']} | "
                f"{r['rss_before_kib'] / 1024:.1f} | {r['rss_max_kib'] / 1024:.1f} | {r['rss_after_kib'] / 1024:.1f} | "
                f"{growth:.1f} | {'yes' if growth <= 8 else 'NO'} |"
            )
        lines.append("")
    tp = [r for r in runs if not r.get("kind") and r.get("scenario") != "soak"]
    if tp:
        other = [r["other_cpu_s"] for r in tp]
        busy = [r.get("quiet_busy_pct") or 0 for r in tp]
        waited_out = sum(1 for r in tp if (r.get("quiet_waited_s") or 0) >= int(meta.get("quiet_wait") or 60))
        lines.append(
            f"Noise: {len(tp)} measured runs; the machine was {statistics.median(busy):.0f} % (median, max {max(busy)} %) of a core "
            f"busy just before a run (threshold {meta.get('quiet_max_pct')} %); {waited_out} runs started after waiting the "
            f"full {meta.get('quiet_wait')} s for quiet; 'other CPU' during runs: median {statistics.median(other):.1f} s, "
            f"max {max(other):.1f} s per run (≈ 0 when nothing else runs)."
        )
        lines.append("")
    if meta.get("skipped"):
        lines.append(f"Skipped: {meta['skipped']}")
        lines.append("")
    if meta.get("suite") == "soak":
        lines.extend(soak_markdown(result))
    return "\n".join(lines) + "\n"


def scaling_rows(summary):
    """(scenario, nginx 2÷1 workers, weir 2÷1 workers) for scenarios measured with both."""
    by = {(s["size"], s["workers"], s["target"]): s["rps"] for s in summary}
    rows = []
    for sc in dict.fromkeys(s["size"] for s in summary):
        ng = ratio(by.get((sc, 2, "nginx")), by.get((sc, 1, "nginx")))
        we = ratio(by.get((sc, 2, "weir")), by.get((sc, 1, "weir")))
        if ng is not None or we is not None:
            rows.append((sc, ng, we))
    return rows


def ratio_rows(summary):
    by = {(s["size"], s["workers"], s["target"]): s for s in summary}
    rows, seen = [], []
    for s in summary:
        key = (s["size"], s["workers"])
        if key in seen:
            continue
        seen.append(key)
        if key[0] == "limiter":
            a, b = by.get(key + ("weir-limit",)), by.get(key + ("weir",))
        else:
            a, b = by.get(key + ("weir",)), by.get(key + ("nginx",))
        if not a or not b:
            continue
        goal, text = target_of(key[0], key[1])
        rps = ratio(a["rps"], b["rps"])
        p99 = ratio(a["p99_ms"], b["p99_ms"])
        rows.append({
            "scenario": key[0], "workers": key[1], "rps": rps, "p99": p99,
            "cpu": ratio(a.get("cpu_s_per_10k"), b.get("cpu_s_per_10k")),
            "rss": ratio(a["peak_rss_kib"], b["peak_rss_kib"]),
            "target_text": text,
            "met": "–" if goal is None or rps is None else ("met" if rps >= goal else "NOT met"),
            "p99_met": "–" if key[0] == "limiter" or p99 is None else ("met" if p99 <= 1.0 else "NOT met"),
        })
    return rows


def soak_markdown(result):
    meta, runs = result["meta"], result["runs"]
    lines = []
    slices = [r for r in runs if r.get("scenario") == "soak" and not r.get("kind")]
    samples = [r for r in runs if r.get("kind") == "soak_sample"]
    lines.append(
        f"Soak: {meta.get('soak_duration')} s of the image-host mix against {meta.get('soak_targets')} "
        f"({meta.get('soak_workers')} workers), wrk -c{meta.get('soak_connections')} with {meta.get('soak_delay_ms')} ms "
        f"between a connection's requests, in slices of {meta.get('soak_slice')} s; RSS, PSS and fds sampled every "
        f"{meta.get('soak_sample', '?')} s."
    )
    lines.append("")
    lines.append("| target | slices | requests | mean rps | p99 ms (worst slice) | errors | log lines above INFO | RSS MiB first / last / max | RSS trend MiB/h (all / second half) | fds first / last / max |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for target in sorted({r["target"] for r in slices}):
        rs = [r for r in slices if r["target"] == target]
        ss = [r for r in samples if r["target"] == target]
        reqs = sum(r.get("requests") or 0 for r in rs)
        secs = sum(r.get("wrk_seconds") or r["duration_s"] for r in rs)
        errs = sum(r["non2xx"] + sum(r["socket_errors"].values()) for r in rs)
        p99 = max((r.get("p99_ms") or 0) for r in rs)
        rss = [x["rss_kib"] / 1024 for x in ss] or [0]
        fds = [x["fds"] for x in ss] or [0]
        ts = [x["t_s"] for x in ss]
        def slope(ts, ys):
            # Least squares, MiB per hour; None with too few samples.
            if len(ts) <= 2 or max(ts) <= min(ts):
                return None
            mt, my = statistics.mean(ts), statistics.mean(ys)
            return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / sum((t - mt) ** 2 for t in ts) * 3600

        trend = slope(ts, rss)
        # The second half leaves out the warm-up (the cache's index and memory tier filling).
        half = [(t, r) for t, r in zip(ts, rss) if ts and t >= (min(ts) + max(ts)) / 2]
        trend2 = slope([t for t, _ in half], [r for _, r in half])
        logs = sum(v.get("count", 0) for k, v in (meta.get("logs") or {}).items() if k.endswith("/" + target))
        lines.append(
            f"| {target} | {len(rs)} | {reqs:,} | {reqs / secs if secs else 0:,.0f} | {p99:.2f} | {errs} | {logs} | "
            f"{rss[0]:.1f} / {rss[-1]:.1f} / {max(rss):.1f} | {fmt(trend, '+.1f')} / {fmt(trend2, '+.1f')} | {fds[0]} / {fds[-1]} / {max(fds)} |"
        )
    lines.append("")
    lines.append("| t s | target | RSS MiB | PSS MiB | fds |")
    lines.append("| ---: | --- | ---: | ---: | ---: |")
    step = max(1, len(samples) // 24)
    for x in samples[::step]:
        lines.append(f"| {x['t_s']} | {x['target']} | {x['rss_kib'] / 1024:.1f} | {x['pss_kib'] / 1024:.1f} | {x['fds']} |")
    lines.append("")
    return lines


def cmd_plot(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(args.result) as f:
        result = json.load(f)
    meta = result["meta"]
    if meta.get("suite") == "soak":
        samples = [r for r in result["runs"] if r.get("kind") == "soak_sample"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        for target in sorted({x["target"] for x in samples}):
            ss = [x for x in samples if x["target"] == target]
            axes[0].plot([x["t_s"] for x in ss], [x["rss_kib"] / 1024 for x in ss], label=target)
            axes[1].plot([x["t_s"] for x in ss], [x["fds"] for x in ss], label=target)
        axes[0].set_title("RSS (MiB)")
        axes[1].set_title("open fds")
        for ax in axes:
            ax.set_xlabel("s")
            ax.legend()
            ax.set_ylim(bottom=0)
        fig.suptitle(f"soak {meta.get('date')} · weir {meta.get('weir_rev')}")
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
        return
    summary = result["summary"]
    workers = sorted({s["workers"] for s in summary})
    if not workers:
        return
    fig, axes = plt.subplots(len(workers), 2, figsize=(15, 4.5 * len(workers)), squeeze=False)
    colors = {"nginx": "#2a9d8f", "weir": "#e76f51", "weir-limit": "#f4a261"}
    for row, w in enumerate(workers):
        ss = [s for s in summary if s["workers"] == w]
        scen = sorted({s["size"] for s in ss}, key=scenario_key)
        targets = sorted({s["target"] for s in ss}, key=lambda t: SUITE_TARGETS.get(t, 9))
        width = 0.8 / max(1, len(targets))
        by = {(s["size"], s["target"]): s for s in ss}
        for col, (field, title) in enumerate((("rps", "requests/s (log)"), ("p99_ms", "p99 latency ms (log)"))):
            ax = axes[row][col]
            for i, t in enumerate(targets):
                xs = [k + (i - (len(targets) - 1) / 2) * width for k in range(len(scen))]
                ys = [(by.get((sc, t)) or {}).get(field) or 0 for sc in scen]
                ax.bar(xs, ys, width, label=t, color=colors.get(t))
            ax.set_xticks(range(len(scen)))
            ax.set_xticklabels(scen, rotation=30, ha="right")
            ax.set_yscale("log")
            ax.set_title(f"{title}, {w} worker{'s' if w > 1 else ''}")
            ax.grid(axis="y", alpha=0.3)
            ax.legend()
    fig.suptitle(f"weir vs nginx · {meta.get('date')} · {meta.get('nproc')} × {meta.get('cpu_model')} · weir {meta.get('weir_rev')}")
    fig.tight_layout()
    fig.savefig(args.png, dpi=90)


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
    md = suite_markdown(result) if meta.get("suite") else markdown(result)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    sys.stdout.write(md)


def cmd_table(args):
    with open(args.result) as f:
        result = json.load(f)
    sys.stdout.write(suite_markdown(result) if result["meta"].get("suite") else markdown(result))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("meta")
    m.add_argument("pairs", nargs="*")
    m.set_defaults(func=cmd_meta)

    m = sub.add_parser("meta-add")
    m.add_argument("meta")
    m.add_argument("pairs", nargs="*")
    m.set_defaults(func=cmd_meta_add)

    k = sub.add_parser("kv")
    k.add_argument("pairs", nargs="*")
    k.set_defaults(func=cmd_kv)

    ln = sub.add_parser("line")
    ln.add_argument("runs")
    ln.set_defaults(func=cmd_line)

    pl = sub.add_parser("plot")
    pl.add_argument("result")
    pl.add_argument("png")
    pl.set_defaults(func=cmd_plot)

    r = sub.add_parser("record")
    r.add_argument("--wrk")
    r.add_argument("--out-file")
    r.add_argument("--client", choices=("wrk", "oha"), default="wrk")
    r.add_argument("--scenario")
    r.add_argument("--t-end", type=int)
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
