"""The Python 3.11 documentation (Debian's python3.11-doc), as a TFDS dataset: one document per
reStructuredText source (497 files, ~1.4 M words: the tutorial, library and language
references, HOWTOs), markup as written."""
import tensorflow_datasets as tfds

from llm.data.builders.text_corpus import TextCorpus, installed, tidy

SOURCES = "usr/share/doc/python3.11/html/_sources"


class PythonDocs(TextCorpus):
  """Python 3.11 documentation sources (.rst.txt files)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "html/_sources/**/*.rst.txt of Debian 12's python3.11-doc."}
  HOMEPAGE = "https://docs.python.org/3.11/"

  def documents(self):
    root = installed("python_docs", "python3.11-doc (apt)", f"apt/python3.11-doc/{SOURCES}",
                     "/" + SOURCES)
    for path in sorted(root.rglob("*.rst.txt")):
      yield (str(path.relative_to(root)).removesuffix(".txt"),
             tidy(path.read_text(encoding="utf-8", errors="replace")))
