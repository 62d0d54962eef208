"""Ablation: next-sentence prediction and masking (BERT vs RoBERTa, Liu et al. 2019): a 4 x 256
BERT pretrained with MLM + NSP or MLM alone (RoBERTa's FULL-SENTENCES rows), with static masks
(drawn once per document, as BERT's preprocessing did) or dynamic ones (drawn afresh each
epoch); each pretrained model fine-tuned on BBC News topics and scored on its test split.

  python -m llm.sweep --config=configs/ablation_nsp.py --workdir=runs/ablation_nsp
  python -m llm.report --workdir=runs/ablation_nsp
4 settings x 3 seeds: 400 pretraining steps of 16 x 128 tokens each on 128 of gensim_text's 364
training articles (a fixed sample per seed), so that static masks repeat: MLM + NSP reads its
rows 2.5 times, MLM alone 3.3 times (on all 364 articles they would read 0.9 and 1.1 epochs,
and static and dynamic masks would be the same rows). Then 100 fine-tuning steps of 32
articles cut to 64 pieces, as in configs/ablation_labels.py (get_evaluations); about 5 min a
member here. Pre-LN without
dropout at peak rate 1e-3, the layout of configs/recipe.py, which trains furthest in few
steps. Results and what they mean: experiments/ablation_nsp/.
"""
from llm.base_config import base_config, parse_arg
from llm.models import presets


def get_config(arg=None):
  parse_arg(arg)   # these configs take no arg: refuse one
  c = base_config()
  c.objective = "masked_lm"
  c.model.update(presets.BERT)
  # Segment embeddings in every setting, so that each has the same parameters.
  c.model.update(norm="pre", num_layers=4, embed_dim=256, num_heads=4, mlp_dim=1024, max_len=128,
                 type_vocab_size=2, dropout_rate=0.0, attention_dropout_rate=0.0)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=40, decay="linear", end_lr_ratio=0.0,
                     b2=0.98, eps=1e-6, weight_decay=0.01)
  c.seq_len = 128
  c.total_steps = 400
  c.batch_size = 16
  c.train_examples = 128   # articles: repeated often enough for static masks to repeat
  c.log_every = 50
  c.eval_every = 0      # once, at the end
  c.checkpoint_every = 200
  return c


def get_sweep(arg=None):
  del arg
  # Seeds outermost: a sweep stopped part-way has every setting at its first seeds.
  return [{"nsp": nsp, "masking": masking, "seed": seed}
          for seed in (0, 1, 2) for nsp in (True, False) for masking in ("static", "dynamic")]


def get_evaluations(arg=None):
  del arg
  # From a pretrained start the fine-tuning rate of a from-scratch BERT (10x BERT's 5e-5)
  # trains this small model far better (experiments/README.md, transfer on BBC News topics).
  return {"topic": {"command": "train", "config": "configs/finetune_topic.py", "split": "test",
                    "optimizer.learning_rate": 5e-4, "total_steps": 100, "seq_len": 64}}


def get_report(arg=None):
  del arg
  return {"metric": "topic/evaluate_test/accuracy"}
