#!/usr/bin/env python3
"""The report of bench/chat/run.sh.

    report.py OUTDIR          results.md, throughput.png and latency-cdf.png
                              in OUTDIR (from runs.jsonl and meta.json); the
                              table is printed too
    report.py --line RUNS     one line about the last run in RUNS (progress)

Every figure is the median over the rounds of one scenario and system. The
plots need matplotlib; without it the report has only the tables.
"""
import json
import statistics
import sys
from pathlib import Path

SYSTEMS = ["gateway", "message", "node", "node-early"]
LABELS = {
    "gateway": "Wasm via gateway",
    "message": "Wasm message direct",
    "node": "Node (ack after commit)",
    "node-early": "Node, ack before INSERT (NOT durable)",
}
SCENARIOS = {
    "seq": "10,000 POSTs in sequence (1 client)",
    "conc": "POST, concurrent clients",
    "read": "GET /api/messages (chat of 1,000 messages)",
}


def percentile(run, p):
    for q, us in run["wrk"]["latency_us"]["percentiles"]:
        if q == p:
            return us / 1000
    raise KeyError(p)


def figures(run):
    w = run["wrk"]
    secs = w["duration_us"] / 1e6
    errors = sum(w["errors"].values())
    return {
        "rps": w["requests"] / secs,
        "requests": w["requests"],
        "p50": percentile(run, 50),
        "p90": percentile(run, 90),
        "p99": percentile(run, 99),
        "max": w["latency_us"]["max"] / 1000,
        "cpu_s": run["cpu_s"],
        "cpu_ms_per_req": 1000 * run["cpu_s"] / max(w["requests"], 1),
        "rss_mib": run["rss_kib"] / 1024,
        "db_cpu_s": run["db_cpu_s"],
        "errors": errors,
        "acked": w["requests"] - w["errors"]["status"],
        "rows_at_end": run.get("rows_at_end"),
        "rows_settled": run.get("rows_settled"),
    }


def load(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def line(runs_path):
    runs = load(runs_path)
    run = runs[-1]
    f = figures(run)
    rows = ""
    if f["rows_at_end"] is not None:
        rows = f"  acked {f['acked']}, stored at end {f['rows_at_end']}, later {f['rows_settled']}"
    print(
        f"    round {run['round']} {run['scenario']:4} {run['system']:10} {f['rps']:8.0f} req/s"
        f"  p50 {f['p50']:6.2f}  p99 {f['p99']:7.2f}  max {f['max']:7.1f} ms  cpu {f['cpu_s']:5.2f} s"
        f"  rss {f['rss_mib']:5.1f} MiB  db cpu {f['db_cpu_s']:5.2f} s  errors {f['errors']}{rows}"
        f"  (load {run['loadavg']})"
    )


def medians(runs):
    """(scenario, system) -> figure -> median over rounds; plus the CDF."""
    out = {}
    for scenario in SCENARIOS:
        for system in SYSTEMS:
            sel = [r for r in runs if r["scenario"] == scenario and r["system"] == system]
            if not sel:
                continue
            figs = [figures(r) for r in sel]
            m = {}
            for key in figs[0]:
                vals = [f[key] for f in figs if f[key] is not None]
                m[key] = statistics.median(vals) if vals else None
            m["errors"] = sum(f["errors"] for f in figs)
            m["rounds"] = len(sel)
            # Stored below acknowledged, right when the load stopped, in any round.
            m["lost_at_end"] = sum(
                max(0, f["acked"] - f["rows_at_end"]) for f in figs if f["rows_at_end"] is not None)
            m["lost_settled"] = sum(
                max(0, f["acked"] - f["rows_settled"]) for f in figs if f["rows_settled"] is not None)
            points = [q for q, _ in sel[0]["wrk"]["latency_us"]["percentiles"]]
            m["cdf"] = [(statistics.median(percentile(r, q) for r in sel), q) for q in points]
            out[scenario, system] = m
    return out


def paired_ratios(runs):
    """(scenario, system) -> figure -> median over rounds of system/node in that round."""
    by = {(r["round"], r["scenario"], r["system"]): figures(r) for r in runs}
    out = {}
    for scenario in SCENARIOS:
        for system in ("gateway", "message"):
            ratios = {}
            for (rnd, sc, sy), f in by.items():
                base = by.get((rnd, sc, "node"))
                if sc != scenario or sy != system or not base:
                    continue
                for key in ("rps", "p50", "p99", "cpu_ms_per_req"):
                    ratios.setdefault(key, []).append(f[key] / base[key])
            if ratios:
                out[scenario, system] = {k: statistics.median(v) for k, v in ratios.items()}
    return out


def unknown_chat(outdir):
    """system -> status of a POST to a missing chat (unknown-chat.txt)."""
    path = outdir / "unknown-chat.txt"
    if not path.exists():
        return {}
    pairs = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return {k: v for k, v in pairs if k != "stored"} | {
        "rows stored afterwards": v for k, v in pairs if k == "stored"}


def fmt(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def tables(meta, med, paired, unknown):
    lines = [
        f"Date {meta['date']}, commit `{meta['commit']}`; {meta['cores']} cores ({meta['cpu']}), "
        f"kernel {meta['kernel']}, MariaDB {meta['mariadb']}, Node {meta['node']}, {meta['wrk']}. "
        f"Load average at the start {meta['loadavg_start']}, at the end {meta['loadavg_end']}. "
        f"{meta['rounds']} rounds, medians shown; concurrent runs: {meta['conns']} connections, "
        f"{meta['duration_s']} s.",
        "",
        "| scenario | system | req/s | req/min | p50 ms | p90 ms | p99 ms | max ms | server CPU s | CPU ms/req "
        "| peak RSS MiB | MariaDB CPU s | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (scenario, system), m in med.items():
        lines.append(
            f"| {scenario} | {LABELS[system]} | {fmt(m['rps'])} | {fmt(m['rps'] * 60)} | {fmt(m['p50'], 2)} "
            f"| {fmt(m['p90'], 2)} | {fmt(m['p99'], 2)} | {fmt(m['max'], 1)} | {fmt(m['cpu_s'], 2)} "
            f"| {fmt(m['cpu_ms_per_req'], 3)} | {fmt(m['rss_mib'], 1)} | {fmt(m['db_cpu_s'], 2)} | {m['errors']} |")
    lines += ["", "Ratios Wasm / Node (ack after commit), of the medians above:", "",
              "| scenario | system | req/s | p50 | p99 | CPU per request |", "|---|---|---:|---:|---:|---:|"]
    for scenario in SCENARIOS:
        base = med.get((scenario, "node"))
        for system in ("gateway", "message"):
            m = med.get((scenario, system))
            if not base or not m:
                continue
            lines.append(
                f"| {scenario} | {LABELS[system]} | {m['rps'] / base['rps']:.2f}× | {m['p50'] / base['p50']:.2f}× "
                f"| {m['p99'] / base['p99']:.2f}× | {m['cpu_ms_per_req'] / base['cpu_ms_per_req']:.2f}× |")
    lines += ["", "The same ratios taken within each round (within a round the systems run back to back, "
              "so machine drift between rounds cancels out), median over the rounds:", "",
              "| scenario | system | req/s | p50 | p99 | CPU per request |", "|---|---|---:|---:|---:|---:|"]
    for scenario in SCENARIOS:
        for system in ("gateway", "message"):
            r = paired.get((scenario, system))
            if r:
                lines.append(f"| {scenario} | {LABELS[system]} | {r['rps']:.2f}× | {r['p50']:.2f}× "
                             f"| {r['p99']:.2f}× | {r['cpu_ms_per_req']:.2f}× |")
    lines += ["", "Durability of POSTs (summed over rounds): acknowledged messages missing from the table "
              "right when the load stopped / 30 s later:", ""]
    for (scenario, system), m in med.items():
        if scenario != "read":
            lines.append(f"- {scenario}, {LABELS[system]}: {m['lost_at_end']} / {m['lost_settled']}")
    if unknown:
        lines += ["", "POST to a chat that does not exist (HTTP status): "
                  + ", ".join(f"{LABELS.get(k, k)} {v}" for k, v in unknown.items())]
    conc, seq = paired.get(("conc", "gateway")), paired.get(("seq", "gateway"))
    if conc and seq:
        verdict = lambda ok: "PASS" if ok else "FAIL"
        lines += [
            "", "Goals of issue #12 (Wasm through its gateway vs Node acknowledging after the commit; "
            "per-round ratios, median):", "",
            f"- concurrent req/s ≥ 2× Node: {verdict(conc['rps'] >= 2)} ({conc['rps']:.2f}×)",
            f"- concurrent p99 ≤ ½ Node's: {verdict(conc['p99'] <= 0.5)} ({conc['p99']:.2f}×)",
            f"- sequential POSTs at least as fast as Node: {verdict(seq['rps'] >= 1)} ({seq['rps']:.2f}×)",
        ]
    return "\n".join(lines)


def plots(outdir, meta, med):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no matplotlib: no plots)", file=sys.stderr)
        return []
    colors = {"gateway": "#1f77b4", "message": "#2ca02c", "node": "#d62728", "node-early": "#bbbbbb"}
    scenarios = [s for s in SCENARIOS if any((s, x) in med for x in SYSTEMS)]
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 3.6))
    axes = axes if len(scenarios) > 1 else [axes]
    for ax, scenario in zip(axes, scenarios):
        systems = [x for x in SYSTEMS if (scenario, x) in med]
        vals = [med[scenario, x]["rps"] for x in systems]
        bars = ax.bar(range(len(systems)), vals, color=[colors[x] for x in systems])
        for bar, system in zip(bars, systems):
            if system == "node-early":
                bar.set_hatch("//")
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in vals], fontsize=8)
        ax.set_xticks(range(len(systems)), [x.replace("node-early", "node early\n(not durable)") for x in systems],
                      fontsize=8)
        ax.set_title(SCENARIOS[scenario], fontsize=9)
        ax.set_ylabel("req/s (median)")
    fig.tight_layout()
    fig.savefig(outdir / "throughput.png", dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 3.6))
    axes = axes if len(scenarios) > 1 else [axes]
    for ax, scenario in zip(axes, scenarios):
        for system in SYSTEMS:
            m = med.get((scenario, system))
            if m:
                xs, ys = zip(*m["cdf"])
                ax.plot(xs, ys, label=LABELS[system], color=colors[system],
                        linestyle="--" if system == "node-early" else "-")
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log)")
        ax.set_ylabel("percentile")
        ax.set_title(SCENARIOS[scenario], fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(outdir / "latency-cdf.png", dpi=80)
    plt.close(fig)
    return ["throughput.png", "latency-cdf.png"]


def main():
    if sys.argv[1] == "--line":
        line(sys.argv[2])
        return
    outdir = Path(sys.argv[1])
    meta = json.loads((outdir / "meta.json").read_text())
    runs = load(outdir / "runs.jsonl")
    med = medians(runs)
    text = tables(meta, med, paired_ratios(runs), unknown_chat(outdir))
    SCENARIOS["seq"] = f"{meta['seq_count']:,} POSTs in sequence (1 client)"
    SCENARIOS["conc"] = f"POST, {meta['conns']} concurrent clients"
    SCENARIOS["read"] = f"GET /api/messages (chat of {meta['read_messages']:,} messages)"
    pngs = plots(outdir, meta, med)
    md = "# bench/chat results\n\n" + text + "\n" + "".join(f"\n![{p}]({p})\n" for p in pngs)
    (outdir / "results.md").write_text(md)
    print(text)


if __name__ == "__main__":
    main()
