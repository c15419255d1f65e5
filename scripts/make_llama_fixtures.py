"""Makes tests/fixtures/llama/: three tiny Llama-family model directories, one per
checkpoint layout this crate loads, with transformers' reference outputs, and a
small instruction dataset.

- llama3/     Llama-3.x layout: tied embeddings, GQA, rope_scaling llama3, bf16 weights,
              a BOS-adding tokenizer (<|begin_of_text|>), eos <|end_of_text|>.
- tinyllama/  TinyLlama layout: untied lm_head, GQA with one KV head, rope_theta 10000,
              f16 weights in two shards + model.safetensors.index.json, <s>/</s>.
- smollm2/    SmolLM2 layout: tied embeddings, 6 heads / 2 KV heads, rope_theta 100000,
              f32 weights, no BOS added, eos <|endoftext|>.

Each directory has config.json, tokenizer.json (a byte-level BPE trained here on the
dataset), the weights, and parity.json: logits of a few token sequences (eager
attention, f32 compute on the stored-precision weights), the SFT token ids of some
rows by the crate's rule (encode(prompt, special tokens) + encode(response, none) +
[eos], truncated to max_len), and the masked SFT loss of those rows as one
right-padded batch (transformers' own shifted, -100-masked cross-entropy).

config.json: llama3 and tinyllama in the Hub's form (rope_theta, rope_scaling), smollm2
in transformers 5's (rope_parameters).

arith.jsonl: 240 prompt/response arithmetic rows ("#### N" answers); arith_gsm8k.jsonl:
20 rows in GSM8K's question/answer form.

Run locally (CI does not need torch):
    .venv/bin/pip install torch transformers tokenizers
    .venv/bin/python scripts/make_llama_fixtures.py [out_dir]
"""
import json, os, random, sys
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors
from transformers import LlamaConfig, LlamaForCausalLM

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/llama"
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
rng = random.Random(0)

# ---- data -------------------------------------------------------------------
def arith_row():
    a, b = rng.randint(0, 49), rng.randint(0, 49)
    op = rng.choice(["+", "-"])
    c = a + b if op == "+" else a - b
    return {"prompt": f"What is {a} {op} {b}?\n", "response": f"{a} {op} {b} = {c}\n#### {c}"}

rows = [arith_row() for _ in range(240)]
with open(f"{out}/arith.jsonl", "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
gsm = []
for _ in range(20):
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    gsm.append({"question": f"Tom has {a} boxes of {b} apples. How many apples?",
                "answer": f"{a} * {b} = <<{a}*{b}={a*b}>>{a*b}\n#### {a*b}"})
with open(f"{out}/arith_gsm8k.jsonl", "w") as f:
    for r in gsm:
        f.write(json.dumps(r) + "\n")
corpus = [r["prompt"] + r["response"] for r in rows] + [
    "Question: " + r["question"] + "\nAnswer: " + r["answer"] for r in gsm]

# ---- tokenizers -----------------------------------------------------------------
def make_tokenizer(specials, bos):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok

LAYOUTS = {
    "llama3": dict(
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], bos="<|begin_of_text|>",
        eos=["<|end_of_text|>", "<|eot_id|>"], dtype=torch.bfloat16, shards=False,
        config=dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=500000.0,
                    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                      high_freq_factor=4.0, original_max_position_embeddings=32),
                    max_position_embeddings=256, tie_word_embeddings=True)),
    "tinyllama": dict(
        specials=["<unk>", "<s>", "</s>"], bos="<s>", eos=["</s>"], dtype=torch.float16, shards=True,
        config=dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1, rms_norm_eps=1e-5, rope_theta=10000.0,
                    max_position_embeddings=256, tie_word_embeddings=False)),
    "smollm2": dict(
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], bos=None, eos=["<|endoftext|>"],
        dtype=torch.float32, shards=False,
        config=dict(hidden_size=72, intermediate_size=192, num_hidden_layers=3, num_attention_heads=6,
                    num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=100000.0,
                    max_position_embeddings=256, tie_word_embeddings=True)),
}
MAX_LEN = 56  # the GSM8K-form row's response is cut short

for name, spec in LAYOUTS.items():
    d = f"{out}/{name}"
    os.makedirs(d, exist_ok=True)
    tok = make_tokenizer(spec["specials"], spec["bos"])
    tok.save(f"{d}/tokenizer.json")
    eos_ids = [tok.token_to_id(t) for t in spec["eos"]]
    bos_id = tok.token_to_id(spec["bos"]) if spec["bos"] else eos_ids[0]
    vocab = 320  # >= the tokenizer's 300 (a padded embedding, as real checkpoints have)
    cfg = LlamaConfig(vocab_size=vocab, bos_token_id=bos_id,
                      eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0],
                      attn_implementation="eager", **spec["config"])
    model = LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():
        # weights at the stored precision (computed in f32)
        for p in model.parameters():
            p.copy_(p.to(spec["dtype"]).float())
    state = {k: v.to(spec["dtype"]).contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    if spec["shards"]:
        names = sorted(state)
        half = len(names) // 2
        weight_map = {}
        for i, part in enumerate([names[:half], names[half:]]):
            fname = f"model-0000{i+1}-of-00002.safetensors"
            save_file({k: state[k] for k in part}, f"{d}/{fname}", metadata={"format": "pt"})
            weight_map.update({k: fname for k in part})
        with open(f"{d}/model.safetensors.index.json", "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=1)
    else:
        save_file(state, f"{d}/model.safetensors", metadata={"format": "pt"})
    conf = cfg.to_dict()
    conf["architectures"] = ["LlamaForCausalLM"]
    conf["torch_dtype"] = str(spec["dtype"]).replace("torch.", "")
    conf.pop("attn_implementation", None)
    conf.pop("_attn_implementation_autoset", None)
    if name != "smollm2":
        # the Hub's (transformers 4) form: rope_theta and rope_scaling; smollm2
        # keeps transformers 5's rope_parameters, so both forms are tested
        rope = conf.pop("rope_parameters")
        conf["rope_theta"] = rope.pop("rope_theta")
        conf["rope_scaling"] = None if rope["rope_type"] == "default" else rope
    with open(f"{d}/config.json", "w") as f:
        json.dump(conf, f, indent=1)

    # logits of token sequences of different lengths, one at a time
    seqs = [tok.encode("What is 7 + 5?\n").ids,
            tok.encode("12 - 3 = 9\n#### 9").ids + [eos_ids[0]],
            list(range(3, 40))]
    logits = []
    with torch.no_grad():
        for s in seqs:
            out_ = model(torch.tensor([s])).logits[0]
            logits.append(out_.tolist())
    # SFT rows: ids by the crate's rule, and the masked loss of the batch
    sft_rows = rows[:4] + [{"prompt": "Question: " + gsm[0]["question"] + "\nAnswer: ",
                            "response": gsm[0]["answer"]}]
    sft_ids, prompt_lens = [], []
    for r in sft_rows:
        p = tok.encode(r["prompt"]).ids
        ids = (p + tok.encode(r["response"], add_special_tokens=False).ids + [eos_ids[0]])[:MAX_LEN]
        sft_ids.append(ids)
        prompt_lens.append(len(p))
    T = max(len(i) for i in sft_ids)
    input_ids = torch.zeros(len(sft_ids), T, dtype=torch.long)
    mask = torch.zeros(len(sft_ids), T, dtype=torch.long)
    labels = torch.full((len(sft_ids), T), -100, dtype=torch.long)
    for i, (ids, p) in enumerate(zip(sft_ids, prompt_lens)):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        mask[i, :len(ids)] = 1
        labels[i, p:len(ids)] = torch.tensor(ids[p:])
    with torch.no_grad():
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss.item()
    with open(f"{d}/parity.json", "w") as f:
        json.dump({"sequences": seqs, "logits": logits, "sft_rows": sft_rows, "max_len": MAX_LEN,
                   "sft_ids": sft_ids, "prompt_lens": prompt_lens, "sft_loss": loss,
                   "transformers": __import__("transformers").__version__}, f)
    for fn in os.listdir(d):
        os.chmod(f"{d}/{fn}", 0o644)
    print(name, "vocab", tok.get_vocab_size(), "eos", eos_ids, "loss", loss,
          "params", sum(p.numel() for p in model.parameters()))
