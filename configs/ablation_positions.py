"""Ablation: position encodings in a GPT (learned, sinusoidal, RoPE, ALiBi (Press et al. 2022),
none), trained on rows of 64 tokens and evaluated at 64, 128 and 256 tokens: does a model read
text longer than it was trained on?

  python -m llm.sweep --config=configs/ablation_positions.py --workdir=runs/ablation_positions
  python -m llm.report --workdir=runs/ablation_positions
5 encodings x 3 seeds: a 2-layer GPT of width 128 with a 2,000-piece vocabulary (small, so that
it learns to use its context within the budget), 1,000 steps of 32 x 64 tokens of gensim_text
(2 M tokens, ~3 min each here), then evaluated at 2x and 4x its training length
(get_evaluations). Results and what they mean: experiments/ablation_positions/.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets

POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")
TRAIN_LEN = 64


def get_config(arg=None):
  parse_arg(arg)   # these configs take no arg: refuse one
  c = base_config()
  c.objective = "causal_lm"
  c.model.update(presets.GPT2)
  # The learned table covers the longest evaluation; its rows past TRAIN_LEN are never trained.
  c.model.update(num_layers=2, embed_dim=128, num_heads=4, mlp_dim=512, max_len=4 * TRAIN_LEN)
  c.vocab_size = 2000
  c.seq_len = TRAIN_LEN
  c.total_steps = 1000
  c.batch_size = 32
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  return c


def get_sweep(arg=None):
  del arg
  # Sinusoids (amplitude 1) swamp GPT-2's token embeddings (std 0.02): the original Transformer
  # scales the token embeddings by sqrt(embed_dim) under them, and so does this member.
  scale = {"sinusoidal": {"model.embed_scale": True}}
  return [{"model.position": p, **scale.get(p, {}), "seed": s} for p in POSITIONS
          for s in (0, 1, 2)]


def get_evaluations(arg=None):
  del arg
  return {f"len{n}": {"seq_len": n} for n in (2 * TRAIN_LEN, 4 * TRAIN_LEN)}


def get_report(arg=None):
  del arg
  return {"metric": "eval/perplexity", "x_label": "evaluation length (tokens)",
          "x": {TRAIN_LEN: "eval/perplexity",
                **{2 * TRAIN_LEN * k: f"evaluate_len{2 * TRAIN_LEN * k}/perplexity"
                   for k in (1, 2)}}}
