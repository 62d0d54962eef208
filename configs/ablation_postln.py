"""Ablation: post-LN vs pre-LN (Xiong et al. 2020): a 6-layer GPT with layer norm after each
residual sum (the original Transformer's placement) or before each sublayer (GPT-2's), over a
grid of peak learning rates, with and without warmup. Post-LN needs warmup and small rates;
pre-LN trains without warmup at higher ones.

  python -m llm.sweep --config=configs/ablation_postln.py --workdir=runs/ablation_postln
  python -m llm.report --workdir=runs/ablation_postln
2 placements x 3 rates x 2 warmups x 2 seeds, 300 steps of 16 x 64 tokens of gensim_text each.
A run whose loss turns non-finite stops there (on_nonfinite=stop) and fails in the sweep: the
report's run count per setting then shows the runs that did not diverge. Results and what they
mean: experiments/ablation_postln/.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets


def get_config(arg=None):
  parse_arg(arg)   # these configs take no arg: refuse one
  c = base_config()
  c.objective = "causal_lm"
  c.model.update(presets.GPT2)
  c.model.update(num_layers=6, embed_dim=128, num_heads=4, mlp_dim=512, max_len=64)
  c.vocab_size = 2000   # the position ablation's: models this small learn to read context
  c.seq_len = 64
  c.batch_size = 16
  c.total_steps = 300
  c.optimizer.clip_norm = 0.0   # no clipping: it would hide the instability being measured
  c.log_every = 25
  c.eval_every = 0      # once, at the end
  c.checkpoint_every = 0
  return c


def get_sweep(arg=None):
  del arg
  return [{"model.norm": norm, "optimizer.learning_rate": lr, "optimizer.warmup_steps": warmup,
           "seed": seed}
          for norm in ("pre", "post") for lr in (1e-3, 3e-3, 1e-2) for warmup in (0, 100)
          for seed in (0, 1)]


def get_report(arg=None):
  del arg
  return {"metric": "eval/loss"}
