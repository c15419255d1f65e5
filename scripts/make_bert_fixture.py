"""Makes tests/fixtures/minilm_parity.json: PyTorch/transformers reference outputs
of all-MiniLM-L6-v2 for a few sentences, which tests/bert_parity.rs compares against.

Run locally (CI does not need torch):
    python -m venv .venv && .venv/bin/pip install torch transformers tokenizers
    scripts/fetch-assets.sh && .venv/bin/python scripts/make_bert_fixture.py [assets]
"""
import json, sys
import torch
from tokenizers import Tokenizer
from transformers import BertModel

assets = sys.argv[1] if len(sys.argv) > 1 else "assets"
MAX_LEN = 48
sentences = [
    "A gripping, beautifully acted drama.",
    "The plot meanders and the jokes fall flat; I checked my watch twice.",
    "Unbelievable!",
]
tok = Tokenizer.from_file(f"{assets}/tokenizer.json")
tok.no_padding()
tok.enable_truncation(MAX_LEN)
ids = [e.ids for e in tok.encode_batch(sentences)]
T = max(len(i) for i in ids)
input_ids = torch.zeros(len(ids), T, dtype=torch.long)
mask = torch.zeros(len(ids), T, dtype=torch.long)
for r, row in enumerate(ids):
    input_ids[r, : len(row)] = torch.tensor(row)
    mask[r, : len(row)] = 1

model = BertModel.from_pretrained(assets, add_pooling_layer=False).eval()
with torch.no_grad():
    hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).float()
    pooled = (hidden * m).sum(1) / m.sum(1)

round6 = lambda xs: [float(f"{x:.7g}") for x in xs]
out = {
    "model": "all-MiniLM-L6-v2",
    "torch": torch.__version__,
    "max_len": MAX_LEN,
    "sentences": sentences,
    "ids": ids,
    "shape": list(hidden.shape),
    # valid (unpadded) positions only are compared; padded rows are garbage in both
    "last_hidden": round6(hidden.flatten().tolist()),
    "mask": mask.flatten().tolist(),
    "mean_pooled": round6(pooled.flatten().tolist()),
}
with open("tests/fixtures/minilm_parity.json", "w") as f:
    json.dump(out, f)
print("wrote tests/fixtures/minilm_parity.json", list(hidden.shape))
