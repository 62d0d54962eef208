"""Headline generation: a BBC News article's body -> its headline (llm/data/builders/
bbc_headlines.py: 1,777 / 227 / 221 articles in bbc_news's splits), scored with ROUGE
(`rouge-score`), BLEU and chrF on beam-search output.

  python -m llm.train --config=configs/headline.py --workdir=/tmp/headline
  python -m llm.evaluate --config=configs/headline.py --workdir=/tmp/headline --split=test
  python experiments/headline_lead.py      # the lead baseline: the body's first k words
Args: model=t5 (default) | smollm2 (SmolLM2-135M-Instruct asked for a headline in its chat
template: evaluate zero-shot, or fine-tune; tuning=full | lora); init=PATH (t5: one of our T5
workdirs, e.g. a configs/recipe.py:family=t5 run, or a Hugging Face T5 folder with its tokenizer;
init=minilm: a BERT2BERT warm start).
A T5.1.1 encoder-decoder (4 + 4 layers of 256) from scratch with a 4,000-piece vocabulary
trained on the training articles. The encoder reads the body's first 255 pieces (about 190
words, the lead paragraphs a headline is written from; bodies average 380 words): longer bodies
are cut at their end, which the predictions file shows as the input.
"""
from llm.base_config import base_config, parse_arg, smollm2_seq2seq, tiny_t5


def get_config(arg=None):
  args = parse_arg(arg, model="t5", init="", tuning="full")
  c = base_config()
  c.objective = "seq2seq"
  c.corpus = "bbc_headlines"
  c.seq2seq.update(template="{source}", target_len=24)   # headlines: 9 words at most
  c.decode.update(max_new_tokens=24, num_beams=4, length_penalty=1.0, batch_size=32,
                  max_examples=0)
  c.eval_batches = -1
  c.eval_every = 500
  c.checkpoint_every = 500
  if args["model"] == "smollm2":
    return smollm2_seq2seq(c, "Write the headline of this news article.", args, seq_len=512)
  if args["model"] != "t5" or args["tuning"] != "full":
    raise ValueError(f"config args model={args['model']!r}, tuning={args['tuning']!r}: expected "
                     f"model=t5 (full fine-tuning) or model=smollm2 (tuning=full or lora)")
  tiny_t5(c, args["init"])
  c.vocab_size = 4000
  c.seq_len = 256
  c.batch_size = 16
  c.total_steps = 1000
  c.optimizer.update(learning_rate=1e-3, warmup_steps=100, decay="cosine", weight_decay=0.01)
  return c
