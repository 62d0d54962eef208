"""A BERT pretraining recipe that transfers: masked LM (RoBERTa-style: no NSP, dynamic masks,
packed documents) on a mixture of the shipped news/Wikipedia text and the unlabeled train text
of the fine-tuning tasks (task-adaptive pretraining, Gururangan et al. 2020), about one hour on
a 2-core CPU: validation MLM accuracy 16.3%, and fine-tunes that beat the fine-tuning configs'
from-scratch models on topic, sentiment, QA and NER at its 300 steps, and match them on spam;
against from scratch in this recipe's own layout they gain on sentiment and QA only
(docs/tasks.md#results, experiments/README.md).

  python -m llm.train --config=configs/recipe_bert.py --workdir=runs/recipe_bert
  python -m llm.train --config=configs/finetune_topic.py:init=runs/recipe_bert \
      --config.optimizer.learning_rate=5e-4 --workdir=runs/topic_recipe

Pre-LN and no dropout, as in Geiping & Goldstein 2022's one-GPU-day BERT (post-LN stalls at
these rates: experiments/ablation_postln/); the fine-tuning configs' from-scratch shape
(4 x 256) with 256 positions, so that QA's windows fit. The mixture holds only
train and validation text of each corpus, never a label or a test example; one SentencePiece
vocabulary is trained on it.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets

# Shares of the training rows (tokens): the tasks' own text, with the news/Wikipedia corpus for
# general English. The small sets (tweets with entities, papers) repeat most.
MIXTURE = {"gensim_text": 1.0, "bbc_news": 3.0, "tweet_sentiment": 3.0, "spam_assassin": 1.0,
           "twitter_ner": 1.0, "aclsum_qa": 1.0}


def get_config(arg=None):
  parse_arg(arg)   # no args
  c = base_config()
  c.objective = "masked_lm"
  c.nsp = False
  c.masking = "dynamic"
  c.corpus = "mixture"
  c.mixture.weights.update(MIXTURE)
  c.model.update(presets.BERT)
  c.model.update(norm="pre", num_layers=4, embed_dim=256, num_heads=4, mlp_dim=1024, max_len=256,
                 type_vocab_size=2, dropout_rate=0.0, attention_dropout_rate=0.0)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=130, decay="linear", end_lr_ratio=0.0,
                     b2=0.98, eps=1e-6, weight_decay=0.01)
  c.seq_len = 256
  c.batch_size = 32
  c.total_steps = 1300   # ~2.6 s a step here: about an hour
  c.log_every = 50
  c.eval_every = 650
  c.checkpoint_every = 100
  return c
