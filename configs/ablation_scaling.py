"""Ablation: scaling laws (Kaplan et al. 2020; Hoffmann et al. 2022) in miniature: validation
loss of 5 GPT sizes (~50 k to ~3 M non-embedding parameters) at 3 token budgets (150, 300, 600
steps of 16 x 64 tokens), and the power laws L ∝ N^-α (per budget) and L ∝ D^-α (per size)
fitted to them.

  python -m llm.sweep --config=configs/ablation_scaling.py --workdir=runs/ablation_scaling
  python -m llm.report --workdir=runs/ablation_scaling
15 runs on gensim_text (the largest budget reads 614 k tokens, half its training split, so no
run sees a token twice). Results and what they mean: experiments/ablation_scaling/.
"""
from llm.base_config import base_config
from llm.models import presets

# layers, width (heads of 32 dimensions, MLP 4x): 12 L d^2 = 49 k ... 3.1 M parameters N
SIZES = ((1, 64), (2, 96), (2, 128), (4, 192), (4, 256))
STEPS = (150, 300, 600)
TOKENS_PER_STEP = 16 * 64


def get_config(arg=None):
  del arg
  c = base_config()
  c.objective = "causal_lm"
  c.model.update(presets.GPT2)
  c.model.update(num_layers=4, embed_dim=256, num_heads=8, mlp_dim=1024, max_len=64)
  c.seq_len = 64
  c.batch_size = 16
  c.total_steps = 600
  c.optimizer.warmup_steps = 30
  c.log_every = 50
  c.eval_every = 0      # once, at the end
  c.checkpoint_every = 0
  return c


def get_sweep(arg=None):
  del arg
  return [{"model.num_layers": layers, "model.embed_dim": width, "model.num_heads": width // 32,
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
