#!/usr/bin/env python3
"""Markdown tables of a comparison (`compare.json`, e.g. from scripts/llm-study.sh).

Usage: scripts/study_tables.py OUT/compare.json [--base base.json] [--series a,b,...]

Per series (default: every one the runs have), a rank x method table of
mean ± std over seeds; AURAC (log2) of each series per method, mean ± std
(computed per seed from that seed's chosen runs, the grid's from its per-rank
runs); the gap to the grid per rank with its 95 % t-interval over seeds;
training seconds and their ratio to the grid's; the pairs' AURAC verdicts.
Only the standard library.
"""

import argparse
import json
import math
import statistics

# two-sided 95 % Student t quantiles by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def aurac_log2(ranks, values):
    if len(ranks) == 1:
        return values[0]
    x = [math.log2(r) for r in ranks]
    area = sum((x[i + 1] - x[i]) * (values[i] + values[i + 1]) / 2 for i in range(len(x) - 1))
    return area / (x[-1] - x[0])


def mean_std(xs):
    m = statistics.fmean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return m, s


def interval(ds):
    m, s = mean_std(ds)
    t = T95.get(len(ds) - 1)
    if t is None:
        return m, None
    half = t * s / math.sqrt(len(ds))
    return m, (m - half, m + half)


def per_seed_series(c, entry, name):
    """{seed: [value per rank]} of series `name` for a summary entry."""
    grid = entry["method"] == "lora-grid"
    out = {}
    for seed in entry["seeds"]:
        runs = [
            r
            for r in c["runs"]
            if r["chosen"]
            and r["seed"] == seed
            and r["head_mode"] == entry["head_mode"]
            and bool(r.get("grid")) == grid
            and (grid or r["method"] == entry["method"])
        ]
        runs.sort(key=lambda r: r["config"]["rank"])
        values = [v for r in runs for v in r.get(name, [])]
        if len(values) == len(entry["ranks"]):
            out[seed] = values
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("compare")
    ap.add_argument("--base", help="`mlora eval --json` of the base model on the same test rows")
    ap.add_argument("--series", help="comma-separated series (default: all)")
    a = ap.parse_args()
    c = json.load(open(a.compare))
    summary = c["summary"]
    ranks = summary[0]["ranks"]
    names = a.series.split(",") if a.series else sorted(summary[0].get("series", {}))
    base = json.load(open(a.base)) if a.base else None
    labels = [s["method"] for s in summary]
    for name in names:
        print(f"\n**{name}** (test, mean ± std over seeds {summary[0]['seeds']})\n")
        head = "| rank | " + " | ".join(labels) + (" | base |" if base else " |")
        print(head)
        print("|" + "---:|" * (len(labels) + 1 + (1 if base else 0)))
        for i, k in enumerate(ranks):
            cells = []
            for s in summary:
                ser = s["series"].get(name)
                cells.append(f"{ser['mean'][i]:.3f} ± {ser['std'][i]:.3f}" if ser else "-")
            b = ""
            if base:
                v = base.get("base", base).get(f"base_{name}")
                b = f" | {v:.3f}" if v is not None else " | -"
            print(f"| {k} | " + " | ".join(cells) + b + " |")
        row = []
        for s in summary:
            seeds = per_seed_series(c, s, name)
            au = [aurac_log2(ranks, v) for v in seeds.values()]
            row.append("{:.3f} ± {:.3f}".format(*mean_std(au)) if au else "-")
        print("| AURAC log2 | " + " | ".join(row) + (" | |" if base else " |"))
    grid = next((s for s in summary if s["method"] == "lora-grid"), None)
    if grid:
        metric = grid["metric"]
        print(f"\n**gap to the grid** ({metric}, method - lora-grid, mean over seeds [95 % t-interval])\n")
        others = [s for s in summary if s is not grid]
        print("| rank | " + " | ".join(s["method"] for s in others) + " |")
        print("|" + "---:|" * (len(others) + 1))
        for i, k in enumerate(ranks):
            cells = []
            for s in others:
                ds = [s["curves"][j][i] - grid["curves"][j][i] for j in range(len(s["seeds"]))]
                m, ci = interval(ds)
                cells.append(f"{m:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else f"{m:+.2f}")
            print(f"| {k} | " + " | ".join(cells) + " |")
        print("\n| method | train s (all runs) | vs grid | lr chosen |")
        print("|---|---:|---:|---|")
        for s in summary:
            cost = s.get("cost_vs_grid")
            lrs = s["grid_lrs"][0] if s.get("grid_lrs") else s["lrs"][:1]
            print(
                f"| {s['method']} | {s.get('train_seconds', 0):.0f} | "
                + (f"{cost:.2f}x" if cost else "-")
                + " | "
                + ",".join(f"{x:g}" for x in lrs)
                + " |"
            )
    print()
    for p in c["pairs"]:
        print(f"- {p['verdict']}")


if __name__ == "__main__":
    main()
