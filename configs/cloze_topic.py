"""BBC News topics as a cloze task for a masked LM (PET-style prompting; no new parameters).

  python -m llm.evaluate --config=configs/cloze_topic.py:init=BERT_WORKDIR --workdir=DIR  # zero-shot
  python -m llm.train --config=configs/cloze_topic.py:init=BERT_WORKDIR --workdir=DIR     # fine-tune
The init must have an MLM head: one of our bert_tiny workdirs, or a Hugging Face BertForMaskedLM /
BertForPreTraining folder (all-MiniLM-L6-v2 ships none, so its head would start untrained).
Each article becomes "[CLS] <article> This article is about [MASK] . [SEP]" and the topic is
the label word with the highest MLM score at the [MASK].
Expect (test split): accuracy 0.822 ± 0.026 fine-tuned from our 600-step bert_tiny over 3 seeds
(docs/tasks.md#results).
"""
from llm.base_config import classification_config


def get_config(arg=None):
  c = classification_config("bbc_news", arg, total_steps=200, objective="cloze")
  c.cloze.template = "{text} This article is about [MASK] ."
  # One word per topic, each a single piece in both our SentencePiece and BERT's vocabulary.
  c.cloze.verbalizer = dict(business="business", entertainment="film", politics="politics",
                            sports="sport", tech="technology")
  return c
