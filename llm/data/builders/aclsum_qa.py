"""A SQuAD-format extractive QA set synthesized from ACLSum (the pip package aclsum), as TFDS data.

ACLSum (Takeshita et al., 2024) has 250 ACL papers; for each of three aspects (challenge, approach,
outcome) annotators marked the sentences of the abstract, introduction and conclusion that support
the aspect's one-sentence summary. Here every (paper, aspect) is one question:

  context   the paper's abstract, introduction and conclusion sentences (as ACLSum tokenized them),
            sentences joined by a space, sections by a blank line: ~1,000 words, so several windows
  question  a fixed template per aspect (QUESTIONS below)
  answers   every sentence the annotators highlighted for that aspect (SQuAD-style: any one counts)

Splits are ACLSum's own: 100 / 50 / 100 papers -> 300 / 150 / 300 questions. The set is written
as SQuAD v1.1 JSON (`<data_dir>/squad/aclsum_qa/<split>.json`) and read back with the same reader
as user files, so it exercises exactly the path a SQuAD user takes.

What it measures: finding, in a long scientific text, a whole sentence that states the paper's
problem / method / result, with many windows per question. What it does not: question
understanding (3 templates), short factoid answers, or unanswerable questions.
"""
import json
import pathlib

import tensorflow_datasets as tfds

from llm.data.builders.common import package_dir
from llm.data.builders.squad import qa_features, read_squad, write_squad

QUESTIONS = {
    "challenge": "What problem or challenge does this paper address?",
    "approach": "What approach or method does this paper propose?",
    "outcome": "What are the results or findings of this paper?",
}
SECTIONS = ("abstract", "introduction", "conclusion")
SPLIT_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}


def paper_questions(paper):
  """The three SQuAD examples of one ACLSum record."""
  context, offsets = "", {}
  for section in SECTIONS:
    if context:
      context += "\n\n"
    for i, sentence in enumerate(paper["sentences"][section]):
      if i:
        context += " "
      offsets[section, i] = len(context)
      context += sentence
  examples = []
  for aspect, question in QUESTIONS.items():
    texts, starts = [], []
    for section in SECTIONS:
      for i, flag in enumerate(paper["highlights"][aspect][section]):
        if flag:
          texts.append(paper["sentences"][section][i])
          starts.append(offsets[section, i])
    if texts:   # every aspect has a highlight in the shipped data; skip rather than invent one
      examples.append({"id": f"{paper['id']}-{aspect}", "title": paper["title"],
                       "context": context, "question": question,
                       "answers": {"text": texts, "answer_start": starts}})
  return examples


def synthesize(split):
  """SQuAD examples of an ACLSum split ('train', 'validation' or 'test')."""
  root = package_dir("aclsum", "aclsum", "aclsum_qa") / "dataset"
  with open(root / SPLIT_FILES[split], encoding="utf-8") as f:
    papers = [json.loads(line) for line in f if line.strip()]
  return [example for paper in papers for example in paper_questions(paper)]


class AclsumQa(tfds.core.GeneratorBasedBuilder):
  """(context, question) -> highlighted sentence span, from ACLSum papers."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "750 questions over 250 papers of aclsum 0.1.2."}

  def _info(self):
    return self.dataset_info_from_configs(features=qa_features(),
                                          homepage="https://pypi.org/project/aclsum/")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    out = pathlib.Path(self._data_dir_root).parent / "squad" / "aclsum_qa"
    paths = {}
    for split in SPLIT_FILES:
      paths[split] = out / f"{split}.json"
      write_squad(synthesize(split), paths[split])
    return {split: self._generate_examples(path) for split, path in paths.items()}

  def _generate_examples(self, path):
    for example in read_squad(path):
      yield example["id"], example
