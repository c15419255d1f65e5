"""PEFT parity fixtures for `mlora import` / `mlora export` (tests/fixtures/peft/).

`make`: a PEFT LoRA adapter of all-MiniLM-L6-v2 made with the real `peft`
package (r = 4 on query, value and intermediate.dense, random non-zero
factors, a 2-class `head` Linear saved through `modules_to_save`), and the
outputs PEFT computes with it for a few sentences: the last hidden states and
the head's logits over the mean-pooled tokens (the crate's classifier).

`check-ours DIR`: the same for an adapter exported at some rank k by the
crate's test `a_matryoshka_adapter_exports_at_a_lower_rank` (run with
MLORA_PEFT_EXPORT_K=DIR), against the crate's own outputs at rank k that the
test wrote to DIR/ours.json.

`check-merged DIR`: loads DIR/merged (written by that test with `mlora
merge`'s function at the same rank) with transformers' BertModel, and the head
from its task_modules.safetensors, and compares with DIR/ours.json.

`check DIR`: loads a PEFT adapter directory (e.g. one written by
`mlora export`) onto the same base model with PEFT and prints the largest
difference of its outputs from the fixture's.

The base model is MiniLM with a `head` attribute, so that PEFT's module names
are the Hugging Face checkpoint's (`encoder.layer.0.attention.self.query`, ...)
and `head`, as in the crate.

Run locally (CI needs only the committed files):
    python -m venv .venv && .venv/bin/pip install torch transformers peft safetensors
    .venv/bin/python scripts/make_peft_fixture.py make assets tests/fixtures/peft
    .venv/bin/python scripts/make_peft_fixture.py check assets tests/fixtures/peft EXPORTED_DIR
    MLORA_PEFT_EXPORT_K=/tmp/k cargo test --test peft lower_rank
    .venv/bin/python scripts/make_peft_fixture.py check-ours assets tests/fixtures/peft /tmp/k
    .venv/bin/python scripts/make_peft_fixture.py check-merged assets tests/fixtures/peft /tmp/k
"""
import json
import sys

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import Tokenizer
from transformers import BertModel

SENTENCES = [
    "a gripping, beautifully acted film",
    "the plot collapses under its own weight",
    "neither funny nor moving",
]
MAX_LEN = 48


def base_model(assets):
    torch.manual_seed(0)
    model = BertModel.from_pretrained(assets, attn_implementation="eager")
    model.eval()
    model.head = torch.nn.Linear(model.config.hidden_size, 2)
    return model


def batch(assets):
    tok = Tokenizer.from_file(f"{assets}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(MAX_LEN)
    ids = [tok.encode(s).ids for s in SENTENCES]
    t = max(len(r) for r in ids)
    input_ids = torch.zeros(len(ids), t, dtype=torch.long)
    mask = torch.zeros(len(ids), t, dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, input_ids, mask


def outputs(model, input_ids, mask):
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        pooled = (hidden * m).sum(1) / m.sum(1)
        logits = model.base_model.model.head(pooled)
    return hidden, logits


def make(assets, out):
    model = base_model(assets)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["query", "value", "intermediate.dense"],
        modules_to_save=["head"],
        lora_dropout=0.0,
        bias="none",
    )
    model = get_peft_model(model, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.05)
            elif "modules_to_save" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    model.eval()
    model.save_pretrained(out)
    ids, input_ids, mask = batch(assets)
    hidden, logits = outputs(model, input_ids, mask)
    fixture = {
        "peft": peft.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentences": SENTENCES,
        "max_len": MAX_LEN,
        "ids": ids,
        "mask": mask.flatten().tolist(),
        "shape": list(hidden.shape),
        "last_hidden": hidden.flatten().tolist(),
        "logits": logits.flatten().tolist(),
    }
    with open(f"{out}/outputs.json", "w") as f:
        json.dump(fixture, f)
    print(f"wrote {out}: r=4, {len(SENTENCES)} sentences, hidden {list(hidden.shape)}")


def check(assets, fixture_dir, adapter_dir, expected=None):
    with open(expected or f"{fixture_dir}/outputs.json") as f:
        fixture = json.load(f)
    model = PeftModel.from_pretrained(base_model(assets), adapter_dir)
    model.eval()
    _, input_ids, mask = batch(assets)
    hidden, logits = outputs(model, input_ids, mask)
    want_hidden = torch.tensor(fixture["last_hidden"]).reshape(hidden.shape)
    want_logits = torch.tensor(fixture["logits"]).reshape(logits.shape)
    m = mask.unsqueeze(-1).bool()
    d_hidden = ((hidden - want_hidden).abs() * m).max().item()
    d_logits = (logits - want_logits).abs().max().item()
    print(
        json.dumps(
            {
                "adapter": adapter_dir,
                "max_abs_diff_last_hidden": d_hidden,
                "max_abs_diff_logits": d_logits,
            }
        )
    )


def check_merged(assets, fixture_dir, out_dir):
    from safetensors.torch import load_file

    with open(f"{out_dir}/ours.json") as f:
        ours = json.load(f)
    model = BertModel.from_pretrained(f"{out_dir}/merged", attn_implementation="eager")
    model.eval()
    head = load_file(f"{out_dir}/merged/task_modules.safetensors")
    _, input_ids, mask = batch(assets)
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        pooled = (hidden * m).sum(1) / m.sum(1)
        # the crate stores a Linear weight as [in, out]
        logits = pooled @ head["head.weight"] + head["head.bias"]
    want_hidden = torch.tensor(ours["last_hidden"]).reshape(hidden.shape)
    want_logits = torch.tensor(ours["logits"]).reshape(logits.shape)
    real = mask.unsqueeze(-1).bool()
    print(
        json.dumps(
            {
                "merged": f"{out_dir}/merged",
                "max_abs_diff_last_hidden": ((hidden - want_hidden).abs() * real).max().item(),
                "max_abs_diff_logits": (logits - want_logits).abs().max().item(),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "check-merged":
        check_merged(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "check-ours":
        check(sys.argv[2], sys.argv[3], sys.argv[4], f"{sys.argv[4]}/ours.json")
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4])
