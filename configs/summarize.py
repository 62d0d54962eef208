"""Aspect-based summarization of ACL papers (ACLSum): abstract + aspect -> a one-sentence summary,
scored with ROUGE and BLEU on texts the decoding engine generates.

  python -m llm.train --config=configs/summarize.py --workdir=/tmp/sum      # tiny T5, from scratch
  python -m llm.evaluate --config=configs/summarize.py:model=smollm2 --workdir=/tmp/sum_smol
Args: model=t5 (T5.1.1 tiny encoder-decoder; default) | gpt (a tiny GPT-2 decoder reading the
input as a prefix) | smollm2 (SmolLM2-135M-Instruct, a decoder reading an instruction in its chat
template: evaluate zero-shot, or fine-tune); init=PATH (t5, gpt: start from one of our workdirs
of that family, e.g. a configs/recipe.py:family=t5 run, with its tokenizer); tuning=full | lora.
Data: llm/data/builders/aclsum_summary.py, 300 / 150 / 300 (paper, aspect) examples.
Expect (validation, ROUGE-1 / 2 / L): tiny T5 0.213 / 0.046 / 0.169 at step 300 of 600; SmolLM2
zero-shot 0.214 / 0.045 / 0.157 on the first 48 examples (docs/tasks.md#summarization).
"""
from llm.base_config import base_config, parse_arg, smollm2_seq2seq, tiny_t5
from llm.models import presets


def get_config(arg=None):
  args = parse_arg(arg, model="t5", init="", tuning="full")
  c = base_config()
  c.objective = "seq2seq"
  c.corpus = "aclsum_summary"
  c.seq2seq.update(template="{aspect}: {source}", target_len=64)
  # Beam search, as summarization papers decode; 64 pieces hold 99% of the reference summaries.
  c.decode.update(max_new_tokens=64, num_beams=4, length_penalty=1.0, batch_size=16)
  c.eval_batches = -1
  if args["model"] in ("t5", "gpt"):
    c.init = args["init"]
    if args["model"] == "t5":
      tiny_t5(c, args["init"])
      c.seq_len = 256     # abstracts average ~210 pieces
    else:   # a prefix LM: <s> input target </s> in one row of the model's 256 positions
      c.model.update(presets.GPT2)
      c.model.update(num_layers=4, embed_dim=256, num_heads=4, mlp_dim=1024, max_len=256,
                     dropout_rate=0.1)
      # + decode.max_new_tokens past the input stays within 256 positions; the input gets
      # 255 + 1 - 64 - 1 = 191 pieces (T5's encoder 255), so long abstracts are cut shorter.
      c.seq_len = 255
    c.vocab_size = 2000   # from scratch: trained on the 100 training abstracts and summaries
    c.batch_size = 16
    c.total_steps = 600
    c.optimizer.update(learning_rate=1e-3, warmup_steps=60, decay="cosine", weight_decay=0.01)
  elif args["model"] == "smollm2":
    smollm2_seq2seq(c, "Summarize the {aspect} of this paper in one sentence.", args)
  else:
    raise ValueError(f"config arg model={args['model']!r}: expected t5, gpt or smollm2")
  if args["model"] != "smollm2" and args["tuning"] == "lora":
    c.lora.update(rank=8, alpha=16.0, train_also="")
    c.optimizer.learning_rate = 1e-3
  elif args["tuning"] not in ("full", "lora"):
    raise ValueError(f"config arg tuning={args['tuning']!r}: expected full or lora")
  c.log_every = 25
  c.eval_every = 300
  c.checkpoint_every = 300
  return c
