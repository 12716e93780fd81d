"""Probe: grounding heads on one run's codes (issue 23); python benchmarks/probe_grounding.py RESULTS_DIR HEAD-NORM STEPS [LR] [EVAL_EVERY]
HEAD-NORM: cells-std | transvg-std | transvg-raw. Reads RESULTS_DIR/.config/*.json and the vqgan/base/seed0 codes the DAG wrote;
prints the training loss and test / train-subset Acc@0.5 and mean IoU. One torch thread; a scratch loop (random batches, AdamW),
not the pipeline job: `lgvq downstream run --task grounding` is the measured one."""
import json, sys, glob, time, numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from lgvq.pipeline.common import dataset_source
from lgvq.pipeline.artifacts import CodeTable
from lgvq.metrics.grounding import iou_xywh_many, xywh_to_cxcywh_norm, cxcywh_norm_to_xywh
from lgvq.downstream.frontend import CodeFrontEnd
from lgvq.downstream.vocab import WordVocab, pad_batch
from lgvq.downstream import grounding as G
RES = sys.argv.pop(1)
cfg = json.load(open(glob.glob(RES + '/.config/*.json')[0]))
src = dataset_source(cfg, 'shapes'); tr, te = src.refs('train'), src.refs('test')
tok = Path(RES) / 'shapes/tokenizers/vqgan/base/seed0'
trc, tec = CodeTable(tok, ('train',)), CodeTable(tok, ('test', 'train', 'val'))
cb = torch.as_tensor(np.load(tok / 'codes/codebook.npy'))
words = WordVocab.build(r.sentence for r in tr)
torch.manual_seed(0)
variant = sys.argv[1]; steps = int(sys.argv[2]); lr = float(sys.argv[3]) if len(sys.argv) > 3 else 5e-4
head, norm = variant.split('-')
fe = CodeFrontEnd(cb, (8, 8), 64, normalize=norm == 'std')
model = G.GROUNDING_HEADS[head](fe, len(words), layers=2, heads=4, max_words=20, dropout=0.1)
S = 32.0
def batch(rs, table):
    tokens, _ = pad_batch([words.encode(r.sentence, 20) or [WordVocab.UNK] for r in rs])
    return table.batch([table(r.image_id) for r in rs], 'cpu'), tokens, torch.tensor([xywh_to_cxcywh_norm(r.bbox_xywh, S, S) for r in rs], dtype=torch.float32)
def evaluate(rs, table):
    model.eval(); pred = []
    with torch.no_grad():
        for i in range(0, len(rs), 256):
            c, t, _ = batch(rs[i:i+256], table); pred += [cxcywh_norm_to_xywh(b, S, S) for b in model.predict(c, t).tolist()]
    model.train(); ious = iou_xywh_many(pred, [r.bbox_xywh for r in rs]); return (ious > .5).mean(), ious.mean()
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
g = torch.Generator().manual_seed(0); t0 = time.time(); run = []
for step in range(1, steps + 1):
    idx = torch.randint(len(tr), (32,), generator=g).tolist()
    c, t, y = batch([tr[i] for i in idx], trc)
    terms = model.losses(c, t, y); loss = 5 * terms['l1'] + 2 * terms['giou'] + terms.get('cell_ce', 0)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    run.append(loss.item())
    if step % int(sys.argv[4] if len(sys.argv) > 4 else 250) == 0:
        print(step, f'loss {np.mean(run[-100:]):.3f}', 'test acc/miou %.3f %.3f' % evaluate(te, tec), 'train %.3f %.3f' % evaluate(tr[:400], trc), f'{time.time()-t0:.0f}s', flush=True)
