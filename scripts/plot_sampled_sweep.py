#!/usr/bin/env python3
"""AURAC against step cost for matryoshka-sampled (m ranks of S per step).

Reads the report.json of each run of the sweep (BENCHMARKS.md, "The sampled
objective") and the step-cost ratios measured by `mlora bench rt`, writes a
JSON summary and an SVG plot:

    python3 scripts/plot_sampled_sweep.py --runs RUNS_DIR --costs COSTS.json \
        --out benches/results/sampled_sweep

RUNS_DIR holds sweep-<name>/report.json for name in lora, m1, m2, m2R, m3,
exact (and any other m<k>[R]); COSTS.json maps the same names to ms/step
ratios against lora (from one interleaved bench run). Needs matplotlib.
"""
import argparse
import json
import re
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, type=Path)
    ap.add_argument("--costs", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="path without extension")
    ap.add_argument("--png", type=Path, help="also a PNG here (for a quick look)")
    args = ap.parse_args()
    costs = json.loads(args.costs.read_text())
    rows = []
    for name, cost in costs.items():
        report = json.loads((args.runs / f"sweep-{name}" / "report.json").read_text())
        rows.append({
            "name": name,
            "method": report["method"],
            "rank_samples": report["config"].get("rank_samples"),
            "sample_max": report["config"].get("sample_max", False),
            "step_cost_vs_lora": cost,
            "accuracy": report["accuracy"],
            "aurac_log2": report["aurac_log2"],
            "aurac_linear": report["aurac_linear"],
        })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups = {
        "matryoshka-sampled, R not forced": lambda r: re.fullmatch(r"m\d+", r["name"]),
        "matryoshka-sampled, R always drawn": lambda r: re.fullmatch(r"m\d+R", r["name"]),
        "other methods": lambda r: not re.fullmatch(r"m\d+R?", r["name"]),
    }
    for (label, member), marker in zip(groups.items(), ["o", "s", "^"]):
        pts = sorted((r for r in rows if member(r)), key=lambda r: r["step_cost_vs_lora"])
        if not pts:
            continue
        xs = [r["step_cost_vs_lora"] for r in pts]
        ys = [r["aurac_log2"] for r in pts]
        ax.plot(xs, ys, marker=marker, linestyle="-" if marker != "^" else "", label=label)
        for r in pts:
            ax.annotate(r["name"], (r["step_cost_vs_lora"], r["aurac_log2"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axvline(2.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("training step cost / lora's")
    ax.set_ylabel("AURAC log2 (%)")
    ax.set_title("RT protocol, seed 42: accuracy over ranks vs step cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".svg"))
    if args.png:
        fig.savefig(args.png, dpi=90)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
