"""Aspect-based summarization from ACLSum (the pip package aclsum), as TFDS data.

ACLSum (Takeshita et al., 2024): for each of 250 ACL papers, expert annotators wrote a one-sentence
summary of each of three aspects: the challenge the paper addresses, its approach and its outcome.
Here every (paper, aspect) is one example:

  source   the paper's abstract (ACLSum's sentences joined by a space; 160 words on average)
  aspect   challenge | approach | outcome (the task's template puts it in front of the source)
  target   the annotators' one-sentence summary of that aspect (~25 words)

Splits are ACLSum's own: 100 / 50 / 100 papers -> 300 / 150 / 300 examples. Only the abstract is
the source, as in ACLSum's abstract-only setting: the full sections run ~1,000 words, longer than
small models' contexts.
"""
import json

import tensorflow_datasets as tfds

from llm.data.builders.common import package_dir

ASPECTS = ("challenge", "approach", "outcome")
SPLIT_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}


def read_split(split):
  """The examples of an ACLSum split ('train', 'validation' or 'test'), in file order."""
  root = package_dir("aclsum", "aclsum", "aclsum_summary") / "dataset"
  examples = []
  with open(root / SPLIT_FILES[split], encoding="utf-8") as f:
    for line in f:
      if not line.strip():
        continue
      paper = json.loads(line)
      source = " ".join(" ".join(paper["sentences"]["abstract"]).split())
      for aspect in ASPECTS:
        target = " ".join(paper["summary"][aspect].split())
        if source and target:
          examples.append({"id": f"{paper['id']}-{aspect}", "aspect": aspect, "source": source,
                           "target": target})
  return examples


class AclsumSummary(tfds.core.GeneratorBasedBuilder):
  """(abstract, aspect) -> the annotators' one-sentence summary of that aspect."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "750 (abstract, aspect, summary) examples of aclsum 0.1.2."}

  def _info(self):
    text = tfds.features.Text()
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({"id": text, "aspect": text, "source": text,
                                             "target": text}),
        supervised_keys=("source", "target"), homepage="https://pypi.org/project/aclsum/")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    return {split: self._generate_examples(split) for split in SPLIT_FILES}

  def _generate_examples(self, split):
    for example in read_split(split):
      yield example["id"], example
