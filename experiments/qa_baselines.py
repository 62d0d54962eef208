"""Reference points for the synthesized ACLSum QA set: answers that read no question at all.

  python experiments/qa_baselines.py [split]
Prints exact match / F1 (SQuAD normalisation) of: the first sentence of the context, the last
sentence of the abstract, and a uniformly random sentence (mean over 10 draws).
"""
import json
import sys

import numpy as np

from llm.data.builders import aclsum_qa
from llm.data.builders.common import package_dir
from llm.scores import answer_f1, exact_match


def scores(examples, predictions):
  em = np.mean([max(exact_match(p, g) for g in ex["answers"]["text"])
                for ex, p in zip(examples, predictions)])
  f = np.mean([max(answer_f1(p, g) for g in ex["answers"]["text"])
               for ex, p in zip(examples, predictions)])
  return em, f


def main(split="validation"):
  root = package_dir("aclsum", "aclsum", "aclsum_qa") / "dataset"
  with open(root / aclsum_qa.SPLIT_FILES[split], encoding="utf-8") as f:
    papers = {p["id"]: p for p in map(json.loads, f)}
  examples = aclsum_qa.synthesize(split)
  sentences = [sum((papers[ex["id"].rsplit("-", 1)[0]]["sentences"][s] for s in aclsum_qa.SECTIONS),
                   []) for ex in examples]
  abstracts = [papers[ex["id"].rsplit("-", 1)[0]]["sentences"]["abstract"] for ex in examples]
  rng = np.random.default_rng(0)
  rows = {"first sentence": scores(examples, [s[0] for s in sentences]),
          "last abstract sentence": scores(examples, [a[-1] for a in abstracts])}
  draws = [scores(examples, [s[rng.integers(len(s))] for s in sentences]) for _ in range(10)]
  rows["random sentence (10 draws)"] = tuple(np.mean(draws, axis=0))
  print(f"{split}: {len(examples)} questions")
  for name, (em, f) in rows.items():
    print(f"| {name} | {em:.3f} | {f:.3f} |")


if __name__ == "__main__":
  main(*sys.argv[1:])
