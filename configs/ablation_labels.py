"""Ablation: transfer vs from scratch by the number of labels (Howard & Ruder 2018; Devlin et
al. 2019): BBC News topics fine-tuned from 100, 1,000 or all training labels (a fixed, nested
sample per seed: config.train_examples), from scratch (a tiny BERT, 10x BERT's rate), from
MiniLM, and from one of our pretraining runs when `recipe=DIR` (its workdir, e.g. a
configs/recipe.py run) is given; test accuracy.

  python -m llm.sweep --config=configs/ablation_labels.py[:recipe=DIR] \
      --workdir=runs/ablation_labels
  python -m llm.report --workdir=runs/ablation_labels
2 (3 with a recipe) starts x 3 label counts x 3 seeds, 100 steps of 32 articles each, each
article cut to its first 64 pieces (the headline and the lead, which name the topic), so that
MiniLM's nine runs take about 3 minutes each here rather than 15 (the sweep about 52 min). The
from-scratch vocabulary is trained on the whole train split's text (no labels). Expect test
accuracy 0.92 from MiniLM with 100 labels, 0.85 from recipe_bert with 1,000 and about 0.6
from scratch at every count; what it means: experiments/ablation_labels/.
"""
from llm.base_config import classification_config, parse_arg

LABELS = (100, 1000, 1777)   # 1,777: every training article


def get_config(arg=None):
  parse_arg(arg, recipe="")
  return classification_config("bbc_news", "init=scratch", total_steps=100, seq_len=64)


def get_sweep(arg=None):
  recipe = parse_arg(arg, recipe="")["recipe"]
  # The peak rates of classification_config: 5e-4 from scratch, BERT's 5e-5 from MiniLM; from
  # our small pretraining runs the scratch rate fine-tunes better (experiments/README.md).
  starts = [{"init": "", "optimizer.learning_rate": 5e-4},
            {"init": "minilm", "optimizer.learning_rate": 5e-5}]
  if recipe:
    starts.append({"init": recipe, "optimizer.learning_rate": 5e-4})
  return [{**start, "train_examples": n, "seed": seed}
          for start in starts for n in LABELS for seed in (0, 1, 2)]


def get_evaluations(arg=None):
  del arg
  return {"heldout": {"flags": {"split": "test"}}}


def get_report(arg=None):
  del arg
  return {"metric": "evaluate_heldout/accuracy", "along": "train_examples", "log_x": True}
