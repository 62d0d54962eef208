"""BERT (encoder, masked LM + next-sentence prediction) on the gensim Wikipedia + news corpus.

  python -m llm.train --config=configs/bert_tiny.py --workdir=/tmp/bert_tiny
Args: size=tiny|base|large (BERT-base/large shapes build and shard; too big to train here),
variant=bert|roberta (RoBERTa: no NSP, packed full documents, dynamic masking).
Expect (600 steps): validation MLM perplexity 786.1, MLM accuracy 7.2% (docs/models.md).
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets

SIZES = {  # layers, embed, heads, mlp, position table
    "tiny": (4, 256, 4, 1024, 128),
    "base": (12, 768, 12, 3072, 512),    # BERT-base, 110M
    "large": (24, 1024, 16, 4096, 512),  # BERT-large, 340M
}


def get_config(arg=None):
  args = parse_arg(arg, size="tiny", variant="bert")
  if args["size"] not in SIZES:
    raise ValueError(f"size={args['size']!r}: expected one of {sorted(SIZES)}")
  if args["variant"] not in ("bert", "roberta"):
    raise ValueError(f"variant={args['variant']!r}: expected 'bert' or 'roberta'")
  layers, embed, heads, mlp, max_len = SIZES[args["size"]]
  roberta = args["variant"] == "roberta"
  c = base_config()
  c.objective = "masked_lm"
  c.nsp = not roberta
  c.masking = "dynamic" if roberta else "static"
  c.model.update(presets.BERT)
  c.model.update(num_layers=layers, embed_dim=embed, num_heads=heads, mlp_dim=mlp,
                 max_len=max_len, type_vocab_size=0 if roberta else 2)
  c.optimizer.update(learning_rate=5e-4, warmup_steps=100, decay="linear", end_lr_ratio=0.0,
                     b2=0.999, eps=1e-6, weight_decay=0.01)
  c.seq_len = 128
  c.total_steps = 600
  c.batch_size = 16
  c.log_every = 50
  c.eval_every = 300
  c.checkpoint_every = 300
  if args["size"] != "tiny":
    c.vocab_size = 30522
    c.batch_size = 256
    c.optimizer.update(learning_rate=1e-4, warmup_steps=10000)
  return c
