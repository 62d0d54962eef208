"""Fill in the middle (Bavarian et al., 2022): the default GPT (gpt_tiny) trained with half of
its documents reordered prefix-suffix-middle behind three sentinel ids (llm/tasks/
fill_in_middle.py), so that it can write a gap from the text on both sides of it.

  python -m llm.train --config=configs/fim_tiny.py --workdir=/tmp/fim_tiny
:rate=R sets the fraction of documents reordered (rate=0 is causal LM on the same rows).
Expect: validation perplexity 465.6 after the 600 steps, and 465.3 on plain text
(`python -m llm.evaluate --config=configs/fim_tiny.py:rate=0 --workdir=/tmp/fim_tiny`) where
gpt_tiny reaches 473.0; about 11 min on a 2-core CPU (docs/tasks.md).
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets


def get_config(arg=None):
  args = parse_arg(arg, rate="0.5")
  c = base_config()
  c.objective = "fill_in_middle"
  c.fim.rate = float(args["rate"])
  # <PRE>, <SUF>, <MID> and 5 unused: 8,008 ids split evenly over a tensor axis of up to 8.
  c.extra_ids = 8
  c.model.update(presets.GPT2)
  c.model.update(num_layers=4, embed_dim=256, num_heads=4, mlp_dim=1024, max_len=128)
  c.seq_len = 128
  c.total_steps = 600
  c.batch_size = 16
  c.log_every = 50
  c.eval_every = 300
  c.checkpoint_every = 300
  return c
