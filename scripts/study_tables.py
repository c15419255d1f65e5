#!/usr/bin/env python3
"""Markdown tables of a comparison (`compare.json`, e.g. from scripts/llm-study.sh).

Usage: scripts/study_tables.py OUT/compare.json [--base base.json] [--series a,b,...]
       scripts/study_tables.py OUT/compare.json [--base base.json] --readme SERIES [--also a,b,...]

Per series (default: every one the runs have), a rank x method table of
mean ± std over seeds; AURAC (log2) of each series per method, mean ± std
(computed per seed from that seed's chosen runs, the grid's from its per-rank
runs); the gap to the grid per rank with its 95 % t-interval over seeds;
training seconds and their ratio to the grid's; the pairs' AURAC verdicts.

With --readme SERIES: the one compact table README.md shows per study part
(its tests check that README holds this output for the committed results):
ranks x methods (each with its chosen learning rate) of SERIES as mean ± std
over seeds, the base model beside them, AURAC (log2; the best in bold), for
each --also series its AURAC (accuracies) or its value at k = R (loss,
perplexity), the gap to the grid per rank with its 95 % t-interval over
seeds, and training seconds against the grid's.
Only the standard library.
"""

import argparse
import json
import math
import statistics

# two-sided 95 % Student t quantiles by degrees of freedom (t(0.975, df), as
# src/stats.rs's t_95 computes them)
T95 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 6: 2.446912, 7: 2.364624, 8: 2.306004, 9: 2.262157, 10: 2.228139}


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


def gaps(own, ref, ranks):
    """Per rank (of `ranks` ranks), the mean of `own - ref` over the seeds
    both have, with its 95 % t-interval (`interval`), or None without a
    common seed; `own` and `ref` as `per_seed_series` returns them."""
    common = [seed for seed in own if seed in ref]
    return [interval([own[seed][i] - ref[seed][i] for seed in common]) if common else None for i in range(ranks)]


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


LOWER_IS_BETTER = ("loss", "perplexity")


def fmt(name, x):
    """A figure of series `name` as README prints it."""
    return f"{x:.3f}" if name in LOWER_IS_BETTER else f"{x:.1f}"


def lr_text(x):
    """1e-2, 3e-4: a learning rate as README writes it."""
    # Rust's `{:e}` (the runs' directory names): 0.0003 -> 3e-4, 0.0025 -> 2.5e-3
    mantissa, exponent = f"{x:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def lr_label(s):
    """The learning rate(s) a summary entry chose: one, or one per seed/rank."""
    if s["method"] == "lora-grid":
        per_k = s["grid_lrs"][0] if s.get("grid_lrs") else []
        if len(set(per_k)) == 1:
            return f"lr {lr_text(per_k[0])} at every k"
        return "lr " + " / ".join(lr_text(x) for x in per_k) + " at k = " + ", ".join(map(str, s["ranks"]))
    distinct = sorted(set(s["lrs"]))
    return "lr " + " / ".join(lr_text(x) for x in distinct)


def readme_table(c, base, name, also):
    """README's compact table of series `name` (see the module's doc)."""
    summary = c["summary"]
    ranks = summary[0]["ranks"]
    grid = next((s for s in summary if s["method"] == "lora-grid"), None)
    base = base.get("base", base) if base else {}
    series = {s["method"]: {n: per_seed_series(c, s, n) for n in [name, *also]} for s in summary}

    def cell(method, n, at):
        vals = [v[at] if at is not None else aurac_log2(ranks, v) for v in series[method][n].values()]
        if not vals:
            return "-", None
        m, sd = mean_std(vals)
        return f"{fmt(n, m)} ± {fmt(n, sd)}", m

    def base_cell(n):
        v = base.get(f"base_{n}")
        return fmt(n, v) if v is not None else ""

    lines = ["| rank k | base | " + " | ".join(f"{s['method']} ({lr_label(s)})" for s in summary) + " |"]
    lines.append("|---:|" + "---:|" * (len(summary) + 1))
    for i, k in enumerate(ranks):
        lines.append(f"| {k} | {base_cell(name)} | " + " | ".join(cell(s["method"], name, i)[0] for s in summary) + " |")
    aurac = [cell(s["method"], name, None) for s in summary]
    known = [m for _, m in aurac if m is not None]
    best = (min if name in LOWER_IS_BETTER else max)(known) if known else None
    shown = [f"**{t}**" if m is not None and m == best else t for t, m in aurac]
    lines.append(f"| **AURAC** (log2) | {base_cell(name)} | " + " | ".join(shown) + " |")
    for n in also:
        at, label = (len(ranks) - 1, f"{n} at k = {ranks[-1]}") if n in LOWER_IS_BETTER else (None, f"{n} AURAC")
        lines.append(f"| {label} | {base_cell(n)} | " + " | ".join(cell(s["method"], n, at)[0] for s in summary) + " |")
    if grid:
        d = 3 if name in LOWER_IS_BETTER else 1
        per_method = {
            s["method"]: gaps(series[s["method"]][name], series["lora-grid"][name], len(ranks)) for s in summary if s is not grid
        }
        for i, k in enumerate(ranks):
            cells = []
            for s in summary:
                if s is grid:
                    cells.append("")
                    continue
                gap = per_method[s["method"]]
                if gap[i] is None:
                    cells.append("-")
                    continue
                m, ci = gap[i]
                cells.append(f"{m:+.{d}f}" + (f" [{ci[0]:+.{d}f}, {ci[1]:+.{d}f}]" if ci else ""))
            lines.append(f"| gap to grid, k = {k} | | " + " | ".join(cells) + " |")
    costs = []
    for s in summary:
        t = f"{s.get('train_seconds', 0):,.0f}"
        costs.append(f"{t} ({s['cost_vs_grid']:.2f}x)" if s.get("cost_vs_grid") else t)
    lines.append("| training s (all lrs, seeds) | | " + " | ".join(costs) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("compare")
    ap.add_argument("--base", help="`mlora eval --json` of the base model on the same test rows")
    ap.add_argument("--series", help="comma-separated series (default: all)")
    ap.add_argument("--readme", metavar="SERIES", help="only README's compact table of SERIES")
    ap.add_argument("--also", default="", help="with --readme: comma-separated series for extra rows")
    a = ap.parse_args()
    c = json.load(open(a.compare))
    if a.readme:
        base = json.load(open(a.base)) if a.base else None
        print(readme_table(c, base, a.readme, [n for n in a.also.split(",") if n]))
        return
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
        ref = per_seed_series(c, grid, metric)
        per_method = [gaps(per_seed_series(c, s, metric), ref, len(ranks)) for s in others]
        print("| rank | " + " | ".join(s["method"] for s in others) + " |")
        print("|" + "---:|" * (len(others) + 1))
        for i, k in enumerate(ranks):
            cells = []
            for gap in per_method:
                if gap[i] is None:
                    cells.append("-")
                    continue
                m, ci = gap[i]
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
