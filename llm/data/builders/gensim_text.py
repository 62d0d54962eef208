"""English text that ships inside the `gensim` pip package, as a TFDS dataset.

Two real corpora from gensim's test data: 106 English Wikipedia articles (a MediaWiki dump, markup
stripped with gensim's own `filter_wiki`) and the 300 news articles of the Lee background corpus.
One example per article; ~10% of articles (chosen by a hash of their id) form the validation split.
"""
import bz2
import re

import tensorflow_datasets as tfds

from llm.data.builders.common import package_dir, split_of

WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
NEWS_FILE = "lee_background.cor"


def gensim_test_data():
  return package_dir("gensim", "gensim", "gensim_text",
                     install="pip install -r requirements.txt") / "test" / "test_data"


def clean_wiki(text):
  """Wiki markup left by filter_wiki -> plain paragraphs; drops table and caption fragments."""
  text = re.sub(r"'{2,}", "", text)
  text = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1", text, flags=re.M)
  lines = (re.sub(r"\s+", " ", line).strip() for line in text.splitlines())
  return "\n".join(line for line in lines if len(line.split()) >= 6)


class GensimText(tfds.core.GeneratorBasedBuilder):
  """Wikipedia + Lee news articles from gensim's test data."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Wikipedia (106 articles) + Lee background news (300 articles)."}

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "source": tfds.features.Text(),
            "text": tfds.features.Text()}),
        homepage="https://radimrehurek.com/gensim/")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    return {"train": self._generate_examples(False), "validation": self._generate_examples(True)}

  def _generate_examples(self, validation):
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    folder = gensim_test_data()
    docs = []
    with bz2.open(folder / WIKI_FILE) as f:
      for title, markup, page_id in extract_pages(f):
        if not markup.lower().startswith("#redirect"):
          docs.append((f"wiki-{page_id}", "wikipedia", clean_wiki(filter_wiki(markup))))
    lines = (folder / NEWS_FILE).read_text(encoding="utf-8").splitlines()
    docs += [(f"lee-{i}", "lee_news", line.strip()) for i, line in enumerate(lines)]
    for doc_id, source, text in docs:
      # Bucket 0 of the shared split rule is validation; this corpus has no test split.
      if text and (split_of(doc_id) == "validation") == validation:
        yield doc_id, {"id": doc_id, "source": source, "text": text}
