"""Ablation: attention heads in a GPT of fixed width 128: multi-head (8 query and 8 key/value
heads), grouped-query (8 query heads sharing 2 key/value heads) and multi-query (1), Ainslie et
al. 2023; and the number of heads (2, 4, 8, 16, all multi-head). Validation perplexity,
parameters, and KV-cache decoding speed (llm.generate: 16 sampled rows x 64 new tokens).

  python -m llm.sweep --config=configs/ablation_heads.py --workdir=runs/ablation_heads
  python -m llm.report --workdir=runs/ablation_heads
6 settings x 3 seeds, 600 steps of 32 x 64 tokens of gensim_text each (the position
ablation's small model and 2,000-piece vocabulary, which learns to read its context in
minutes). Results and what they mean: experiments/ablation_heads/.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets

# (query heads, key/value heads)
HEADS = ((8, 8), (8, 2), (8, 1), (2, 2), (4, 4), (16, 16))


def get_config(arg=None):
  parse_arg(arg)   # these configs take no arg: refuse one
  c = base_config()
  c.objective = "causal_lm"
  c.model.update(presets.GPT2)
  c.model.update(num_layers=2, embed_dim=128, num_heads=8, mlp_dim=512, max_len=128)
  c.vocab_size = 2000
  c.seq_len = 64
  c.total_steps = 600
  c.batch_size = 32
  c.log_every = 100
  c.eval_every = 0      # once, at the end
  c.checkpoint_every = 0
  return c


def get_sweep(arg=None):
  del arg
  return [{"model.num_heads": q, "model.num_kv_heads": kv, "seed": s}
          for q, kv in HEADS for s in (0, 1, 2)]


def get_evaluations(arg=None):
  del arg
  return {"decode": {"command": "generate", "flags": {
      "prompt": "The", "max_new_tokens": 64, "num_samples": 16, "temperature": 1.0}}}


def get_report(arg=None):
  del arg
  return {"metric": "eval/perplexity"}
