"""SQuAD v1.1 JSON: a reader that names what is wrong, a writer, and a TFDS builder over your files.

  {"version": "1.1", "data": [{"title": ..., "paragraphs": [{"context": ...,
    "qas": [{"id": ..., "question": ..., "answers": [{"text": ..., "answer_start": <char>}]}]}]}]}

Each question becomes one example {id, title, context, question, answers{text, answer_start}}.
Use it from a config with `corpus="squad"` and `data_files.train/validation/test=PATH`.
"""
import json
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from llm.data.builders.common import files_config_name, read_text, undeclared_config_allowed


def qa_features():
  return tfds.features.FeaturesDict({
      "id": tfds.features.Text(), "title": tfds.features.Text(),
      "context": tfds.features.Text(), "question": tfds.features.Text(),
      "answers": tfds.features.Sequence({"text": tfds.features.Text(),
                                         "answer_start": tfds.features.Scalar(np.int32)})})


def read_squad(path):
  """[example dict] of a SQuAD-format file; ValueError naming the file and place on bad input."""
  path = pathlib.Path(path)
  try:
    data = json.loads(read_text(path))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None

  def need(node, key, kind, where):
    if not isinstance(node, dict) or not isinstance(node.get(key), kind):
      raise ValueError(f"{path}: {where}: expected a {kind.__name__} '{key}' (SQuAD v1.1 layout: "
                       f"data[].paragraphs[].qas[].answers[])")
    return node[key]

  examples, ids = [], set()
  for a, article in enumerate(need(data, "data", list, "top level")):
    title = article.get("title", "") if isinstance(article, dict) else ""
    for p, paragraph in enumerate(need(article, "paragraphs", list, f"data[{a}]")):
      where = f"data[{a}].paragraphs[{p}]"
      context = need(paragraph, "context", str, where)
      for q, qa in enumerate(need(paragraph, "qas", list, where)):
        here = f"{where}.qas[{q}]"
        question = need(qa, "question", str, here)
        qid = str(qa.get("id", ""))
        if not qid:
          raise ValueError(f"{path}: {here}: expected an 'id'")
        if qid in ids:
          raise ValueError(f"{path}: {here}: id {qid!r} is used twice")
        ids.add(qid)
        texts, starts = [], []
        for n, answer in enumerate(need(qa, "answers", list, here)):
          text = need(answer, "text", str, f"{here}.answers[{n}]")
          start = need(answer, "answer_start", int, f"{here}.answers[{n}]")
          if context[start:start + len(text)] != text:
            raise ValueError(f"{path}: {here}.answers[{n}]: text {text!r} is not at answer_start "
                             f"{start} of the context (found {context[start:start + len(text)]!r})")
          texts.append(text)
          starts.append(start)
        if not texts:
          raise ValueError(f"{path}: {here}: no answers (SQuAD v1.1 questions all have one)")
        examples.append({"id": qid, "title": title, "context": context, "question": question,
                         "answers": {"text": texts, "answer_start": starts}})
  return examples


def write_squad(examples, path):
  """Writes examples (as read_squad returns them) as SQuAD v1.1 JSON, one paragraph per context."""
  articles = {}
  for ex in examples:
    paragraphs = articles.setdefault(ex["title"], {})
    qas = paragraphs.setdefault(ex["context"], [])
    qas.append({"id": ex["id"], "question": ex["question"],
                "answers": [{"text": t, "answer_start": int(s)} for t, s in
                            zip(ex["answers"]["text"], ex["answers"]["answer_start"])]})
  data = [{"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in ps.items()]}
          for title, ps in articles.items()]
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False, indent=1))


class SquadJson(tfds.core.GeneratorBasedBuilder):
  """Extractive QA from SQuAD v1.1 files: SquadJson(paths={"train": ..., "validation": ...})."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Questions of user-supplied SQuAD v1.1 files."}

  def __init__(self, *, paths, **kwargs):
    self._paths = {split: pathlib.Path(path).expanduser().absolute()
                   for split, path in paths.items()}
    if "train" not in self._paths or not set(self._paths) <= {"train", "validation", "test"}:
      raise ValueError(f"SquadJson paths={sorted(paths)}: expected 'train' and optionally "
                       f"'validation', 'test'")
    # Named after the files' contents: data prepared from other (or edited) files is not reused
    with undeclared_config_allowed():
      super().__init__(config=tfds.core.BuilderConfig(name=files_config_name(self._paths)),
                       **kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=qa_features(),
        description=f"Files: {', '.join(f'{s}={p}' for s, p in self._paths.items())}")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    return {split: self._generate_examples(path) for split, path in self._paths.items()}

  def _generate_examples(self, path):
    for example in read_squad(path):
      yield example["id"], example
