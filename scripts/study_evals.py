#!/usr/bin/env python3
"""Markdown table of the LLM study's extra evaluations (scripts/llm-study.sh's
`originals` part): the chosen seed-1 adapters of a comparison, each evaluated
by `mlora eval --adapter RUN --out DIR` into DIR/<method>/seed-1/[rank-<k>/]lr-<lr>/.

Usage: scripts/study_evals.py DIR|SAVED.json [--base base.json] [--series exact_match,token_accuracy,loss]
                              [--save SAVED.json]

Per series, a rank x method table (the grid's column assembled from its
rank-k runs, each at its own rank), AURAC (log2) of each column, the base
model's figure beside them (from `mlora eval --json` of the base), and the
share of generations cut by the token limit. `--save` writes the figures it
read (per method: the learning rates, per rank every per-rank series) to a
JSON file that can stand in for DIR, so the tables can be committed with
their data (benches/results/) without the runs. Only the standard library.
"""

import argparse
import glob
import json
import os

from study_tables import aurac_log2, lr_text

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


def load(source):
    """The columns of DIR (its runs' report.json files), or of a --save file."""
    if os.path.isfile(source):
        with open(source) as f:
            saved = json.load(f)["columns"]
        return {
            m: (set(c["lrs"]), {int(k): v for k, v in c["ranks"].items()})
            for m, c in saved.items()
        }
    return columns(source)


def save(cols, path):
    """Writes the columns as `{"columns": {method: {"lrs", "ranks"}}}`."""
    saved = {m: {"lrs": sorted(lrs), "ranks": {str(k): v for k, v in sorted(ranks.items())}} for m, (lrs, ranks) in cols.items()}
    with open(path, "w") as f:
        json.dump({"columns": saved}, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", help="the evaluations' directory, or a file written by --save")
    ap.add_argument("--base", help="`mlora eval --json` of the base model on the same rows")
    ap.add_argument("--series", default="exact_match,token_accuracy,loss,cut_generations")
    ap.add_argument("--save", help="also write the figures read to this JSON file")
    args = ap.parse_args()
    cols = load(args.dir)
    if not cols:
        raise SystemExit(f"{args.dir}: no report.json under <method>/seed-*/")
    if args.save:
        save(cols, args.save)
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
            f"{m} (lr {', '.join(lr_text(lr) for lr in sorted(cols[m][0]))})" for m in methods
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
