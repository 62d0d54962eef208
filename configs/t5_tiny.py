"""Encoder-decoder span-corruption pretraining (T5) on the gensim Wikipedia + news corpus.

  python -m llm.train --config=configs/t5_tiny.py --workdir=/tmp/t5_tiny
  python -m llm.evaluate --config=configs/t5_tiny.py --workdir=/tmp/t5_tiny   # target perplexity
Args: variant=t5 (T5.1.1: pre-RMSNorm, relative position buckets, gated GELU, no biases, untied
output; the default) | transformer (the original: post-LN, sinusoidal positions, ReLU, embeddings
shared by both stacks and the output); size=tiny (trains here) | small | base | large (T5.1.1's
shapes: they build and shard, far too big to train on a CPU).
Expect: the loss falls from about ln(vocab_size) (tests/test_span_corruption.py trains both
variants from the CLI); no reference perplexity is recorded yet.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets

SIZES = {  # layers (each stack), embed, heads, head_dim, mlp
    "tiny": (4, 256, 4, 64, 768),
    "small": (8, 512, 6, 64, 1024),      # T5.1.1 small, 77M
    "base": (12, 768, 12, 64, 2048),     # T5.1.1 base, 248M
    "large": (24, 1024, 16, 64, 2816),   # T5.1.1 large, 783M
}
VARIANTS = {"t5": presets.T5, "transformer": presets.TRANSFORMER}


def get_config(arg=None):
  args = parse_arg(arg, size="tiny", variant="t5")
  if args["size"] not in SIZES:
    raise ValueError(f"size={args['size']!r}: expected one of {sorted(SIZES)}")
  if args["variant"] not in VARIANTS:
    raise ValueError(f"variant={args['variant']!r}: expected one of {sorted(VARIANTS)}")
  layers, embed, heads, head_dim, mlp = SIZES[args["size"]]
  c = base_config()
  c.objective = "span_corruption"
  c.model.update(VARIANTS[args["variant"]])
  c.model.update(num_layers=layers, num_decoder_layers=layers, embed_dim=embed, num_heads=heads,
                 head_dim=head_dim, mlp_dim=mlp, max_len=512, dropout_rate=0.0)
  c.extra_ids = 128   # sentinels; 8000 + 128 pieces split evenly over a `tensor` axis
  c.seq_len = 128
  c.span_corruption.update(noise_density=0.15, mean_span_length=3.0)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=100, decay="cosine", weight_decay=0.01)
  c.total_steps = 600
  c.batch_size = 16
  c.log_every = 50
  c.eval_every = 300
  c.checkpoint_every = 300
  if args["size"] != "tiny":
    c.vocab_size, c.extra_ids = 32000, 128   # T5's 32,000 pieces + sentinels = 32,128
    c.seq_len = 512
    c.batch_size = 128
  return c
