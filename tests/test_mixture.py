"""The pretraining corpora (split sizes and contents against their sources) and corpus=mixture:
each corpus's share of the rows, exact resume, per-corpus validation."""
import gzip
import json

import numpy as np
import pytest

from llm import tasks
from llm.data import batching, corpora, tokenizer as tokenizer_lib
from llm.data.builders import text_corpus

from helpers import load_config, tiny_config

# Documents per corpus (train + validation), counted from the sources: the pinned npm packages'
# files (233 addresses; 135 chapters + etymology, extracts, epilogue) and the WEB's 1,397
# chapters less the 9 its versification leaves empty (Greek Esther 11-16, the Additions to
# Daniel). The Debian docs are counted from their files, which change with the package version.
SIZES = {"sotu": 233, "moby_dick": 138, "web_bible": 1388,
         "linux_docs": ("apt/linux-doc-6.1/usr/share/doc/linux-doc-6.1/Documentation", "*.rst.gz"),
         "python_docs": ("apt/python3.11-doc/usr/share/doc/python3.11/html/_sources",
                         "*.rst.txt")}


def prepared(name):
  config = load_config("gpt_tiny", corpus=name)
  return corpora.prepare_corpus(config)


def examples(builder, split):
  source = builder.as_data_source(split)
  return source.__getitems__(list(range(len(source))))   # one read, not one per example


def split_ids(builder):
  return {split: [corpora.as_text(ex["id"]) for ex in examples(builder, split)]
          for split in builder.info.splits}


@pytest.mark.parametrize("name", sorted(SIZES) + ["fortunes"])
def test_pretraining_corpus_has_disjoint_train_and_validation_splits(name):
  ids = split_ids(prepared(name))
  assert sorted(ids) == ["train", "validation"]
  total = len(ids["train"]) + len(ids["validation"])
  assert len(set(ids["train"]) | set(ids["validation"])) == total
  assert 0.07 < len(ids["validation"]) / total < 0.13
  if isinstance(SIZES.get(name), tuple):
    folder, pattern = SIZES[name]
    assert total == len(list((text_corpus.data_root() / folder).rglob(pattern)))
  elif name in SIZES:
    assert total == SIZES[name]


def test_fortunes_are_the_records_between_percent_lines():
  root = text_corpus.data_root() / "apt" / "fortunes" / "usr/share/games/fortunes"
  records = [r for r in (root / "science").read_text(errors="replace").split("\n%\n") if r.strip()]
  ids = split_ids(prepared("fortunes"))
  assert sum(i.startswith("science/") for split in ids.values() for i in split) == len(records)


def text_of(builder, doc_id):
  for split in builder.info.splits:
    for ex in examples(builder, split):
      if corpora.as_text(ex["id"]) == doc_id:
        return corpora.as_text(ex["text"])
  raise KeyError(doc_id)


def test_pretraining_documents_read_as_their_sources():
  assert text_of(prepared("moby_dick"), "chapter_1").startswith(
      "CHAPTER 1. Loomings.\n\nCall me Ishmael.")
  # The WEB's footnote on "God" sits between two words: dropped, the words stay apart.
  genesis = text_of(prepared("web_bible"), "Gen.1").splitlines()
  assert genesis[0] == "In the beginning, God created the heavens and the earth."
  assert len(genesis) == 31
  # One sentence per line (the package's addresses are one line each).
  assert text_of(prepared("sotu"), "1790_george_washington_n").splitlines()[:2] == [
      "Fellow-Citizens of the Senate and House of Representatives: In meeting you again I feel "
      "much satisfaction in being able to repeat my congratulations on the favorable prospects "
      "which continue to distinguish our public affairs.",
      "The abundant fruits of another year have blessed our country with plenty and with the "
      "means of a flourishing commerce."]
  source = (text_corpus.data_root() / "apt/linux-doc-6.1/usr/share/doc/linux-doc-6.1/"
            "Documentation/process/howto.rst.gz")
  with gzip.open(source, "rt") as f:
    assert text_of(prepared("linux_docs"), "process/howto.rst") == text_corpus.tidy(f.read())


# A mixture of two small corpora, read with gpt_tiny's tokenizer (no new tokenizer to train).
WEIGHTS = {"moby_dick": 1.0, "sotu": 3.0}


@pytest.fixture(scope="module")
def mix():
  base = load_config("gpt_tiny")
  tok = tokenizer_lib.load_tokenizer(base, corpora.prepare_corpus(base))
  overrides = {"corpus": "mixture", "tokenizer.path": tok.path, "seq_len": 64, "batch_size": 8,
               **{f"mixture.weights.{k}": v for k, v in WEIGHTS.items()}}
  config = load_config("gpt_tiny", **overrides)
  return config, corpora.prepare_corpus(config), tok, overrides


def rows(iterator, n):
  return [row for batch in (next(iterator) for _ in range(n)) for row in batch["inputs"]]


def test_mixture_rows_are_each_corpus_rows_in_the_weights_proportions(mix):
  config, builder, tok, overrides = mix
  task = tasks.get_task("causal_lm")
  mixed = rows(batching.train_iterator(config, task, tok, builder), 50)   # 400 rows
  # Each corpus alone, as the mixture reads it: the mixed rows are these, interleaved.
  alone = {name: rows(batching.train_iterator(config, task, tok, builder.members[name]), 50)
           for name in WEIGHTS}
  taken = {name: 0 for name in WEIGHTS}
  for row in mixed:
    name = next(n for n in WEIGHTS if np.array_equal(row, alone[n][taken[n]]))
    taken[name] += 1
  assert taken == {"moby_dick": 100, "sotu": 300}
  # Rows are full packed sequences: the shares of rows are shares of tokens.
  assert all(np.count_nonzero(row) == config.seq_len for row in mixed)


def test_mixture_resumes_exactly(mix):
  config, builder, tok, _ = mix
  task = tasks.get_task("causal_lm")
  first = batching.train_iterator(config, task, tok, builder)
  rows(first, 5)
  state = json.loads(json.dumps(first.get_state()))   # as a checkpoint stores it
  expected = rows(first, 5)
  second = batching.train_iterator(config, task, tok, builder)
  second.set_state(state)
  np.testing.assert_array_equal(rows(second, 5), expected)


def test_a_mixture_run_reports_validation_per_corpus_and_overall(tmp_path):
  from llm import training
  config = tiny_config(corpus="mixture", total_steps=2, vocab_size=2000,
                       **{"mixture.weights.moby_dick": 1, "mixture.weights.fortunes": 1})
  result = training.train_and_evaluate(config, tmp_path)
  per_corpus = [result["moby_dick/loss"], result["fortunes/loss"]]
  assert min(per_corpus) < result["loss"] < max(per_corpus)
  assert (tmp_path / "tokenizer.model").is_file()
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert "eval/moby_dick/perplexity" in logged[-1]


def test_labeled_corpora_lend_the_running_text_of_train_and_validation_each_once():
  from llm.data.builders import aclsum_qa
  config = load_config("bert_tiny", corpus="mixture", nsp=True, seq_len=64, batch_size=4,
                       **{"mixture.weights.twitter_ner": 1, "mixture.weights.aclsum_qa": 1})
  mixture = corpora.prepare_corpus(config)
  tweets = corpora.prepare_corpus(load_config("bert_tiny", corpus="twitter_ner"))
  for split in ("train", "validation"):
    papers = [doc["text"] for doc in mixture.members["aclsum_qa"].as_data_source(split)]
    contexts = [ex["context"] for ex in aclsum_qa.synthesize(split)]   # 3 questions a paper
    assert sorted(papers) == sorted(set(contexts)) and len(contexts) == 3 * len(papers)
    texts = [doc["text"] for doc in mixture.members["twitter_ner"].as_data_source(split)]
    words = [" ".join(corpora.as_text(w) for w in ex["tokens"]) for ex in examples(tweets, split)]
    assert sorted(texts) == sorted(set(words))
  assert len(papers) == 50 and len(texts) == 236   # validation: 50 papers, 236 distinct tweets
  test_contexts = {ex["context"] for ex in aclsum_qa.synthesize("test")}
  train_papers = {doc["text"] for doc in mixture.members["aclsum_qa"].as_data_source("train")}
  assert not test_contexts & train_papers
  # The pretraining objectives read them as documents (NSP draws partners across documents).
  base = load_config("gpt_tiny")
  tok = tokenizer_lib.load_tokenizer(base, corpora.prepare_corpus(base))
  config = load_config("bert_tiny", corpus="mixture", seq_len=64, batch_size=4,
                       **{"tokenizer.path": tok.path, "mixture.weights.twitter_ner": 1,
                          "mixture.weights.aclsum_qa": 1})
  batch = next(batching.train_iterator(config, tasks.get_task("masked_lm"), tok, mixture))
  assert batch["inputs"].shape == (4, 64) and batch["nsp_labels"].shape == (4,)
