"""The lead baseline of headline generation: the first k words of each body as its headline.

  python experiments/headline_lead.py [split ...]     (default: validation test)
Prints ROUGE-1 / 2 / L F-measure (Google's `rouge-score`, stemmed, mean over articles, the
scorer configs/headline.py's evaluation uses) and sacrebleu's BLEU and chrF for k = 3 ... 10;
headlines average 5.2 words.
"""
import sys

from llm import scores
from llm.data.builders import bbc_headlines
from llm.data.builders.common import split_of


def main(splits=("validation", "test")):
  scorer = scores.rouge_scorer()
  for split in splits:
    examples = [bbc_headlines.example(a) for a in bbc_headlines.articles()
                if split_of(a["text"]) == split]
    print(f"{split}: {len(examples)} articles")
    print("| k words | ROUGE-1 | ROUGE-2 | ROUGE-L | BLEU | chrF |\n|---|---|---|---|---|---|")
    for k in range(3, 11):
      leads = [" ".join(e["source"].split()[:k]) for e in examples]
      heads = [e["target"] for e in examples]
      rouge = [scorer.score(h, p) for h, p in zip(heads, leads)]
      mean = {t: sum(r[t].fmeasure for r in rouge) / len(rouge) for t in ("rouge1", "rouge2",
                                                                           "rougeL")}
      print(f"| {k} | {mean['rouge1']:.3f} | {mean['rouge2']:.3f} | {mean['rougeL']:.3f} | "
            f"{100 * scores.corpus_bleu(leads, heads):.1f} | "
            f"{100 * scores.corpus_chrf(leads, heads):.1f} |")


if __name__ == "__main__":
  main(sys.argv[1:] or ("validation", "test"))
