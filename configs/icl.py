"""In-context learning with SmolLM2-135M-Instruct: zero- and few-shot classification by the
log-probability of each label word after k demonstrations from the train split, uncalibrated
and with contextual calibration (llm/tasks/in_context.py). Evaluation only, no training:

  python -m llm.evaluate --config=configs/icl.py:task=topic,shots=4 --workdir=/tmp/icl \
      --split=test --config.seed=0      # the seed draws the demonstrations
Args: task=topic (BBC News, 5 topics; default) | sentiment (tweets, 3 classes); shots=0, 1, 4, 8.
Texts are cut to their first 40 (topic) or 30 (sentiment) words, so 8 shots fit 768 pieces.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets

TASKS = {  # corpus, template, words kept per text
    "topic": ("bbc_news", "Article: {text}\nTopic: {label}\n\n", 40),
    "sentiment": ("tweet_sentiment", "Tweet: {text}\nSentiment: {label}\n\n", 30),
}


def get_config(arg=None):
  args = parse_arg(arg, task="topic", shots="0")
  if args["task"] not in TASKS:
    raise ValueError(f"config arg task={args['task']!r}: expected one of {sorted(TASKS)}")
  if not args["shots"].isdigit():
    raise ValueError(f"config arg shots={args['shots']!r}: expected a whole number, e.g. 4")
  corpus, template, words = TASKS[args["task"]]
  c = base_config()
  c.objective = "in_context"
  c.corpus = corpus
  c.init = "smollm2"
  c.model.update(presets.LLAMA)   # the init replaces the shapes with the checkpoint's
  c.icl.update(shots=int(args["shots"]), template=template, max_words=words)
  c.seq_len = 768
  c.batch_size = 10   # whole examples: 5 classes x (plain, content-free)
  c.eval_batches = -1
  return c
