"""Extractive QA in SQuAD v1.1 format, fine-tuning a BERT encoder with a start/end span head.

  python -m llm.train --config=configs/finetune_qa.py[:init=minilm|scratch|PATH] --workdir=DIR
Data: 750 questions synthesized from the ACLSum papers shipped by the aclsum pip package
(llm/data/builders/aclsum_qa.py: "what problem / approach / results?" -> a sentence the
annotators highlighted). Contexts run ~1,300 pieces, so each question spans several windows.
With SQuAD files of your own:
  --config.corpus=squad --config.data_files.train=train-v1.1.json \
  --config.data_files.validation=dev-v1.1.json --config.seq_len=384 --config.qa.max_answer_len=30
Expect (test split, 200 steps): exact match / F1 0.277 / 0.475 from MiniLM (docs/tasks.md#results).
"""
from llm.base_config import classification_config


def get_config(arg=None):
  c = classification_config("aclsum_qa", arg, total_steps=200, seq_len=256,
                            objective="extractive_qa")
  c.batch_size = 16   # ~2,800 training windows: 200 steps = 1.2 epochs
  c.vocab_size = 4000   # from scratch: the 100 training papers support at most ~4,400 pieces
  # Answers here are whole sentences: 90% are <= 41 words, so allow up to 64 pieces.
  c.qa.update(max_query_len=32, doc_stride=128, max_answer_len=64, n_best=20)
  return c
