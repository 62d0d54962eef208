"""GPT (decoder, causal LM) on the gensim Wikipedia + news corpus; the default experiment.

  python -m llm.train --config=configs/gpt_tiny.py --workdir=/tmp/gpt_tiny
Paper shapes build (and shard) with :size=small (GPT-2 124M), :size=medium (350M), :size=large.
Expect: validation perplexity 473.0 after the 600 steps (`bash scripts/default_run.sh`, about
6.5 min on a 2-core CPU; docs/benchmarks.md).

  python -m llm.sweep --config=configs/gpt_tiny.py --workdir=runs/gpt_tiny_seeds
runs it with seeds 0, 1 and 2 (get_sweep below), one llm.train run each.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets

SIZES = {  # layers, embed, heads, mlp, context
    "tiny": (4, 256, 4, 1024, 128),
    "small": (12, 768, 12, 3072, 1024),    # GPT-2 124M
    "medium": (24, 1024, 16, 4096, 1024),  # GPT-2 350M
    "large": (36, 1280, 20, 5120, 1024),   # GPT-2 774M
}


def get_config(arg=None):
  args = parse_arg(arg, size="tiny")
  if args["size"] not in SIZES:
    raise ValueError(f"size={args['size']!r}: expected one of {sorted(SIZES)}")
  layers, embed, heads, mlp, context = SIZES[args["size"]]
  c = base_config()
  c.objective = "causal_lm"
  c.model.update(presets.GPT2)
  c.model.update(num_layers=layers, embed_dim=embed, num_heads=heads, mlp_dim=mlp,
                 max_len=context)
  c.seq_len = 128
  c.total_steps = 600
  c.batch_size = 16
  c.log_every = 50
  c.eval_every = 300
  c.checkpoint_every = 300
  if args["size"] != "tiny":
    c.vocab_size = 50304   # GPT-2's 50257 padded to a multiple of 128, so `vocab` shards
    c.seq_len = context
    c.batch_size = 512
  return c


def get_sweep(arg=None):
  """Three seeds (python -m llm.sweep): how far the validation perplexity moves with the
  initialisation and the data order alone."""
  del arg   # the same seeds at every size
  return [{"seed": seed} for seed in (0, 1, 2)]
