"""Probe: why the VQA heads do not read shapes (issue 23); python benchmarks/probe_vqa_types.py SHAPES_DIR MODEL STEPS [key=value ...]
SHAPES_DIR: a run's `<results_dir>/shapes` (the embedded data under data/generated, codes under tokenizers/vqgan/<variant>/seed<seed>).
MODEL: gpt2 (lgvq's VQAModel: the code prefix then the question, causal) | enc-causal | enc-bidir (torch's pre-norm
TransformerEncoder over the same tokens, causal or not: code tokens see the question when bidirectional).
keys: seed=0 variant=base conv=0 (downstream.frontend_conv) layers=2 heads=1 width=64 lr=5e-4 bs=32
      types=object,number,color,location (the question types trained and tested on) objw=1 (loss weight of object
      questions) warm=0 (the first N steps on object questions only, then on `types`).
Prints the loss and per-type accuracy on 600 training questions and on the test split, object accuracy split by the
number of objects in the image (object@1 needs no colour binding) and the most predicted object answers. One torch
thread; a scratch loop (random batches, AdamW, clip 1.0), not the pipeline job: `lgvq downstream run --task vqa` is
the measured one."""
import json, sys, time
from pathlib import Path
from collections import Counter, defaultdict
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F

torch.set_num_threads(1)
from lgvq.data.registry import get_source
from lgvq.metrics.vqa import COCOQA_QUESTION_TYPES as TYPES
from lgvq.pipeline.artifacts import CodeTable
from lgvq.downstream.frontend import CodeFrontEnd
from lgvq.downstream.vocab import AnswerVocab, WordVocab, pad_batch
from lgvq.downstream.vqa import VQAModel

R, model_kind, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
kw = dict(a.split("=", 1) for a in sys.argv[4:])
seed, conv, layers = int(kw.get("seed", 0)), int(kw.get("conv", 0)), int(kw.get("layers", 2))
heads, width, lr, bs = int(kw.get("heads", 1)), int(kw.get("width", 64)), float(kw.get("lr", 5e-4)), int(kw.get("bs", 32))
types, objw, warm = set(kw.get("types", "object,number,color,location").split(",")), float(kw.get("objw", 1)), int(kw.get("warm", 0))
unknown = (set(kw) - {"seed", "variant", "conv", "layers", "heads", "width", "lr", "bs", "types", "objw", "warm"},
           types - set(TYPES.values()), {model_kind} - {"gpt2", "enc-causal", "enc-bidir"})
if any(unknown):
    sys.exit(f"probe_vqa_types.py: unknown keys / question types / model: {unknown} (see the docstring)")
tok = Path(R) / "tokenizers" / "vqgan" / kw.get("variant", "base") / f"seed{seed}"
torch.manual_seed(seed)
src = get_source("shapes", f"{R}/data/generated")
n_objects = {s: {int(k): len(v["objects"]) for k, v in json.load(open(f"{R}/data/generated/attributes_{s}.json")).items()}
             for s in ("train", "test")}
book = torch.as_tensor(np.load(tok / "codes" / "codebook.npy")).float()
codes = {s: CodeTable(tok, (s,)) for s in ("train", "test")}  # the heads' reader: grids stay on disk
grid = codes["train"].grid
qa = {s: src.qa(s) for s in ("train", "test")}
words = WordVocab.build(q.question for q in qa["train"])
answers = AnswerVocab.build((q.answer for q in qa["train"]), 100)
train = [q for q in qa["train"] if answers.lookup(q.answer) >= 0 and TYPES[q.qtype] in types]
test = [q for q in qa["test"] if TYPES[q.qtype] in types]
train_object = [q for q in train if q.qtype == 0]
print(model_kind, steps, kw, "grid", grid, "train questions", len(train), "test questions", len(test), flush=True)
fe = CodeFrontEnd(book, grid, width, conv_layers=conv)


class Encoder(nn.Module):
    def __init__(self, causal: bool):
        super().__init__()
        self.frontend, self.causal = fe, causal
        self.wte = nn.Embedding(len(words), width)
        self.wpe = nn.Parameter(torch.randn(1, fe.n_tokens + 40, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, 0.1, activation="gelu", batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, len(answers)))

    def forward(self, c, question, lengths):
        x = torch.cat([self.frontend(c), self.wte(question)], 1)
        x = x + self.wpe[:, : x.shape[1]]
        T, n = x.shape[1], fe.n_tokens
        pad = torch.arange(T)[None] >= (n + lengths)[:, None]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if self.causal else None
        h = self.enc(x, mask=mask, src_key_padding_mask=pad)
        return self.head(h[torch.arange(len(c)), n + lengths - 1])


m = (VQAModel(fe, len(words), len(answers), layers=layers, heads=heads, max_words=20) if model_kind == "gpt2"
     else Encoder(model_kind == "enc-causal"))
opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.01)


def batch(qs, split):
    t, lengths = pad_batch([words.encode(q.question, 20, eos=True) for q in qs])
    table = codes[split]
    return table.batch([table(q.image_id) for q in qs], "cpu"), t, lengths


def evaluate(qs, split):
    m.eval(); preds = []
    with torch.no_grad():
        for i in range(0, len(qs), 128):
            preds += [answers.answers[j] for j in m(*batch(qs[i:i + 128], split)).argmax(-1).tolist()]
    m.train()
    hit, n = defaultdict(int), defaultdict(int)
    for q, p in zip(qs, preds):
        keys = [TYPES[q.qtype]] + ([f"object@{n_objects[split][q.image_id]}"] if q.qtype == 0 else [])
        for k in keys:
            hit[k] += p == q.answer; n[k] += 1
    out = {k: round(hit[k] / n[k], 3) for k in sorted(n)}
    out["all"] = round(sum(hit[k] for k in TYPES.values() if k in n) / len(qs), 4)
    out["object_predictions"] = dict(Counter(p for q, p in zip(qs, preds) if q.qtype == 0).most_common(3))
    return out


g = torch.Generator().manual_seed(seed); t0 = time.time()
for step in range(1, steps + 1):
    pool = train_object if step <= warm else train
    qs = [pool[i] for i in torch.randint(len(pool), (bs,), generator=g).tolist()]
    target = torch.tensor([answers.lookup(q.answer) for q in qs])
    w = torch.tensor([objw if q.qtype == 0 else 1.0 for q in qs])
    loss = (F.cross_entropy(m(*batch(qs, "train")), target, reduction="none") * w).sum() / w.sum()
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    if step % max(1, steps // 4) == 0:
        print(step, f"loss {loss.item():.3f}", f"{time.time() - t0:.0f}s", "\n  train", evaluate(train[:600], "train"),
              "\n  test ", evaluate(test, "test"), flush=True)
