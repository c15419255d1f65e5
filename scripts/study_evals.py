#!/usr/bin/env python3
"""Markdown table of the LLM study's extra evaluations (scripts/llm-study.sh's
`originals` part): the chosen seed-1 adapters of a comparison, each evaluated
by `mlora eval --adapter RUN --out DIR` into DIR/<method>/seed-1/[rank-<k>/]lr-<lr>/.

Usage: scripts/study_evals.py DIR [--base base.json] [--series exact_match,token_accuracy,loss]

Per series, a rank x method table (the grid's column assembled from its
rank-k runs, each at its own rank), AURAC (log2) of each column, the base
model's figure beside them (from `mlora eval --json` of the base), and the
share of generations cut by the token limit. Only the standard library.
"""

import argparse
import glob
import json
import os

from study_tables import aurac_log2

ORDER = ["lora", "dylora", "matryoshka", "matryoshka-sampled", "matryoshka-exact", "lora-grid"]


def columns(root):
    """{method: (lr label, {rank: report's per-rank figures})}."""
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "seed-*", "**", "report.json"), recursive=True)):
        rel = os.path.relpath(path, root).split(os.sep)
        method = rel[0]
        with open(path) as f:
            report = json.load(f)
        lrs, ranks = out.setdefault(method, (set(), {}))
        lrs.add(report["config"]["lr"])
        for i, k in enumerate(report["ranks"]):
            ranks[k] = {
                name: values[i]
                for name, values in report.items()
                if isinstance(values, list) and len(values) == len(report["ranks"]) and name != "ranks"
            }
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--base", help="`mlora eval --json` of the base model on the same rows")
    ap.add_argument("--series", default="exact_match,token_accuracy,loss,cut_generations")
    args = ap.parse_args()
    cols = columns(args.dir)
    if not cols:
        raise SystemExit(f"{args.dir}: no report.json under <method>/seed-*/")
    methods = [m for m in ORDER if m in cols] + sorted(m for m in cols if m not in ORDER)
    base = None
    if args.base:
        with open(args.base) as f:
            base = json.load(f)
    ranks = sorted({k for m in methods for k in cols[m][1]})
    for name in args.series.split(","):
        if not any(name in cols[m][1].get(k, {}) for m in methods for k in ranks):
            continue
        head = ["k"] + (["base"] if base else []) + [
            f"{m} ({', '.join(f'{lr:g}' for lr in sorted(cols[m][0]))})" for m in methods
        ]
        print(f"\n{name} (seed 1)\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "---:|" * len(head))
        for k in ranks:
            row = [str(k)]
            if base:
                b = base.get(f"base_{name}")
                row.append("" if b is None else f"{b:.3f}" if name == "loss" else f"{b:.1f}")
            for m in methods:
                v = cols[m][1].get(k, {}).get(name)
                row.append("" if v is None else f"{v:.3f}" if name == "loss" else f"{v:.1f}")
            print("| " + " | ".join(row) + " |")
        if name in ("exact_match", "token_accuracy", "accuracy"):
            row = ["AURAC"] + ([""] if base else [])
            for m in methods:
                values = [cols[m][1].get(k, {}).get(name) for k in ranks]
                row.append("" if None in values else f"{aurac_log2(ranks, values):.1f}")
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
