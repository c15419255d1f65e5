#!/usr/bin/env python3
"""How far a comparison (or the LLM study's parts) has got, from its files.

Usage: python3 scripts/study_status.py DIR [DIR ...]
       python3 scripts/study_status.py runs/llm-study      # every part under it

DIR is an `mlora compare --out` directory (it holds compare-plan.json), or a
directory whose subdirectories are (the LLM study's: its evaluation parts,
`mlora eval --out` directories under <method>/seed-*/, are counted too, and
the hours of all parts added up). A training run is finished when its
learning rate's directory holds compared.json (or .valid/compared.json, a
validation run waiting for its method's choice) or diverged.json. Per method:
runs finished / planned, and the training work in LoRA-run equivalents (a
step of matryoshka-exact runs |S| passes, matryoshka-sampled m), which is what
the training time left scales with (each run's evaluation adds about the same
share whatever its method). With finished runs, their times (report.json:
training and evaluation seconds) and the time left at their pace (a method
with no finished run yet: the first method's, scaled by its passes per step).
"""
import json
import os
import statistics
import sys

from study_tables import lr_text


def finished(lr_dir):
    return any(os.path.isfile(os.path.join(lr_dir, f))
               for f in ("compared.json", "diverged.json", os.path.join(".valid", "compared.json")))


def run_seconds(method_dir):
    """(training s, evaluation s) of every finished run under a method's
    directory, from its report.json (a validation run's included)."""
    found = []
    for root, _, files in os.walk(method_dir):
        # a finished run's directory (a validation run's `.valid` included)
        # holds its compared.json beside its report.json
        if "report.json" in files and "compared.json" in files:
            try:
                r = json.load(open(os.path.join(root, "report.json")))
                found.append((r["ms_per_step"] * r["train_steps"] / 1000, r.get("eval_seconds") or 0.0))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return found


def unit_dirs(out, method, head_modes, seed, ranks):
    for head in head_modes:
        suffix = "" if head == "joint" else f"-{head}"
        base = os.path.join(out, f"{method}{suffix}", f"seed-{seed}")
        if method == "lora-grid":
            for k in ranks:
                yield os.path.join(base, f"rank-{k}")
        else:
            yield base


def lr_name(lr):
    return f"lr-{lr_text(lr)}"


def status(out):
    state = json.load(open(os.path.join(out, "compare-plan.json")))
    plan, train = state["plan"], state["config"]
    ranks = train["ranks"]
    lrs = plan["lrs"]
    seeds = plan["seeds"]
    heads = plan.get("head_modes", ["joint"])
    first_only = plan.get("select_on_first_seed", False) and len(lrs) > 1
    m = train.get("rank_samples") or 2
    weight = {"matryoshka-exact": len(ranks), "matryoshka-sampled": m}
    rows, total_done, total_all = [], 0.0, 0.0
    for method in plan["methods"]:
        done = planned = 0
        for i, seed in enumerate(seeds):
            for unit in unit_dirs(out, method, heads, seed, ranks):
                if first_only and i > 0:
                    planned += 1
                    lr_dirs = [os.path.join(unit, d) for d in (os.listdir(unit) if os.path.isdir(unit) else [])
                               if d.startswith("lr-")]
                    done += int(any(finished(d) for d in lr_dirs))
                else:
                    planned += len(lrs)
                    done += sum(finished(os.path.join(unit, lr_name(lr))) for lr in lrs)
        w = weight.get(method, 1)
        total_done += w * done
        total_all += w * planned
        rows.append((method, done, planned, w))
    where = "done" if os.path.isfile(os.path.join(out, "compare.json")) else "running or stopped"
    print(f"{out}: {where}; work {total_done:.0f} / {total_all:.0f} LoRA-run equivalents "
          f"({100 * total_done / max(total_all, 1):.0f} %)")
    times = {method: run_seconds(os.path.join(out, method)) for method, *_ in rows}
    base = times.get("lora") or next((t for t in times.values() if t), [])
    spent = left = 0.0
    for method, done, planned, w in rows:
        own = times[method]
        spent += sum(t + e for t, e in own)
        per_run = None
        if own:
            per_run = statistics.fmean(t + e for t, e in own)
        elif base:
            # no run of this method finished yet: the first method's pace, its
            # training scaled by the method's passes per step (a grid run
            # evaluates its own rank only)
            e_share = 1 / len(ranks) if method == "lora-grid" else 1
            per_run = statistics.fmean(w * t + e * e_share for t, e in base)
        if per_run is not None:
            left += (planned - done) * per_run
        pace = f", {per_run / 60:.1f} min per run" + ("" if own else " (estimated)") if per_run else ""
        print(f"  {method:20} {done:3} / {planned:3} runs (x{w}){pace}")
    if spent:
        print(f"  time: {spent / 3600:.1f} h in the finished runs (training + evaluation); "
              f"about {left / 3600:.1f} h left at their pace")
    return spent


def evaluations(out):
    """Seconds of the `mlora eval --out` runs under OUT/<method>/seed-*/
    (their report.json's evaluation time); None when there are none."""
    found = []
    for root, _, files in os.walk(out):
        if "report.json" in files and "compared.json" not in files:
            try:
                found.append(json.load(open(os.path.join(root, "report.json"))).get("eval_seconds") or 0.0)
            except (OSError, ValueError, AttributeError):
                continue
    if not found:
        return None
    print(f"{out}: {len(found)} evaluations finished, {sum(found) / 3600:.2f} h")
    return sum(found)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    for arg in sys.argv[1:]:
        if os.path.isfile(os.path.join(arg, "compare-plan.json")):
            status(arg)
            continue
        subdirs = sorted(d for d in os.listdir(arg) if os.path.isdir(os.path.join(arg, d)))
        parts = [d for d in subdirs if os.path.isfile(os.path.join(arg, d, "compare-plan.json"))]
        if not parts:
            print(f"{arg}: no comparison here (no compare-plan.json)", file=sys.stderr)
            return 1
        total = sum(status(os.path.join(arg, d)) for d in parts)
        for d in subdirs:
            if d not in parts:
                total += evaluations(os.path.join(arg, d)) or 0.0
        print(f"{arg}: {total / 3600:.2f} h in all finished runs and evaluations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
