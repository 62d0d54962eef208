"""The Linux kernel's documentation (Debian's linux-doc-6.1), as a TFDS dataset: one document per
reStructuredText file under Documentation/ (3,184 files in 6.1.176-1, ~3.1 M words), markup as
written."""
import gzip

import tensorflow_datasets as tfds

from llm.data.builders.text_corpus import TextCorpus, installed, tidy

DOCS = "usr/share/doc/linux-doc-6.1/Documentation"


class LinuxDocs(TextCorpus):
  """Linux kernel documentation (.rst files)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Documentation/**/*.rst.gz of Debian 12's linux-doc-6.1."}
  HOMEPAGE = "https://docs.kernel.org/"

  def documents(self):
    root = installed("linux_docs", "linux-doc-6.1 (apt)", f"apt/linux-doc-6.1/{DOCS}", "/" + DOCS)
    for path in sorted(root.rglob("*.rst.gz")):
      with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        yield str(path.relative_to(root)).removesuffix(".gz"), tidy(f.read())
