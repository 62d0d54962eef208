"""A pretraining recipe that transfers, one per model family, at one budget: about an hour on a
2-core CPU, on a mixture of the shipped news/Wikipedia text and the unlabeled train text of the
fine-tuning tasks (task-adaptive pretraining, Gururangan et al. 2020).

  python -m llm.train --config=configs/recipe.py --workdir=runs/recipe_bert            # BERT
  python -m llm.train --config=configs/recipe.py:family=gpt --workdir=runs/recipe_gpt  # GPT
  python -m llm.train --config=configs/recipe.py:family=t5 --workdir=runs/recipe_t5    # T5
  python -m llm.train --config=configs/finetune_topic.py:init=runs/recipe_bert \
      --config.optimizer.learning_rate=5e-4 --workdir=runs/topic_recipe

Args: family=bert (the default) | gpt | t5.
- bert: masked LM, RoBERTa-style (no NSP, dynamic masks, packed documents). Expect validation MLM
  accuracy 16.3% after its 1,300 steps, and fine-tunes that beat the fine-tuning configs'
  from-scratch models on topic, sentiment, QA and NER at its 300 steps, and match them on spam;
  against from scratch in this recipe's own layout they gain on sentiment and QA only
  (docs/tasks.md#results, experiments/README.md).
- gpt: causal LM (GPT-2 layout) on the same rows: validation perplexity 139.5 after its 1,100
  steps. t5: span corruption (T5.1.1 layout, 4 + 4 layers) on the same rows: validation
  perplexity of the span targets 141.7 (accuracy 29.8%) after its 900 steps. Both are judged
  downstream on ACLSum summarization (configs/summarize.py:model=gpt|t5,init=WORKDIR);
  experiments/README.md has their budgets and results.

Every family is pre-LN without dropout, as in Geiping & Goldstein 2022's one-GPU-day BERT
(post-LN stalls at these rates: experiments/ablation_postln/), 4 layers of width 256 (the
fine-tuning configs' from-scratch shape) and rows of 256 tokens, so that QA's windows fit. The
mixture holds only train and validation text of each corpus, never a label or a test example;
one SentencePiece vocabulary is trained on it.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets

# Shares of the training rows (tokens): the tasks' own text, with the news/Wikipedia corpus for
# general English. The small sets (tweets with entities, papers) repeat most.
MIXTURE = {"gensim_text": 1.0, "bbc_news": 3.0, "tweet_sentiment": 3.0, "spam_assassin": 1.0,
           "twitter_ner": 1.0, "aclsum_qa": 1.0}

# family: (objective, preset, total_steps). The steps fill about an hour each here (batches of
# 32 x 256 tokens): 2.4-2.8 s a BERT step, 3.1-3.7 s a GPT step (logits at every position),
# 4.2 s a T5 step (two stacks).
FAMILIES = {"bert": ("masked_lm", presets.BERT, 1300),
            "gpt": ("causal_lm", presets.GPT2, 1100),
            "t5": ("span_corruption", presets.T5, 900)}


def get_config(arg=None):
  family = parse_arg(arg, family="bert")["family"]
  if family not in FAMILIES:
    raise ValueError(f"config arg family={family!r}: expected one of {sorted(FAMILIES)}")
  objective, preset, total_steps = FAMILIES[family]
  c = base_config()
  c.objective = objective
  c.corpus = "mixture"
  c.mixture.weights.update(MIXTURE)
  c.model.update(preset)
  c.model.update(norm="pre", num_layers=4, embed_dim=256, num_heads=4, mlp_dim=1024, max_len=256,
                 dropout_rate=0.0, attention_dropout_rate=0.0)
  if family == "bert":
    c.nsp = False
    c.masking = "dynamic"
    c.model.type_vocab_size = 2
  elif family == "t5":
    # A gated MLP of 768 (T5.1.1's ratio) holds about as many weights as a plain one of 1024
    # (590k against 524k a layer).
    c.model.update(num_decoder_layers=4, head_dim=64, mlp_dim=768)
    c.extra_ids = 128   # the sentinels
  c.optimizer.update(learning_rate=1e-3, warmup_steps=total_steps // 10, decay="linear",
                     end_lr_ratio=0.0, b2=0.98, eps=1e-6, weight_decay=0.01)
  c.seq_len = 256
  c.batch_size = 32
  c.total_steps = total_steps
  c.log_every = 50
  c.eval_every = total_steps // 2
  c.checkpoint_every = 100
  return c
