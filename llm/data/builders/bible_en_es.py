"""English-Spanish verse pairs: the King James Version (Debian's sword-text-kjv, module
engKJV2006eb) and the Reina-Valera 1909 (sword-text-sparv, spaRV1909eb), aligned by reference
(the module files the Spanish under the KJV's verse numbers), as TFDS data for translation
(configs/translate.py), one builder per direction (`bible_en_es`, `bible_es_en`).

Every verse both Bibles have is one example (31,084 of 31,102 references), less 7 chapters
whose Spanish sits one verse off its English (the two traditions divide them differently: Jonah
2, Numbers 13 and 30, 1 Samuel 24, Hosea 12, Job 39, 2 Chronicles 33; found by `shifted`):
30,935 pairs, 787 k English and 700 k Spanish words. Shifts inside a chapter that `shifted`
does not see may remain (Job 40, whose Spanish runs five verses ahead, is one).

  id       the reference, e.g. Gen.1.1
  source   the verse in the source language (markup, footnotes, the KJV's paragraph marks removed)
  target   the verse in the target language

Validation and test are whole books, chosen so that no verse, chapter or parallel passage (the
Gospels, Kings / Chronicles, Ephesians / Colossians, a Psalm repeated) is on both sides of a split:
validation Esther and Philippians (271 pairs), test Ruth, Jonah, Galatians, James and 1 John (484).
The rest (30,180 pairs) is train. Reading both Bibles takes ~2 s.
"""
import numpy as np
import tensorflow_datasets as tfds

from llm.data.builders.web_bible import open_bible, verse_text

SPLIT_BOOKS = {"validation": ("Esth", "Phil"), "test": ("Ruth", "Jonah", "Gal", "Jas", "1John")}


def verse(bible, book, chapter, number):
  text = verse_text(bible.get(books=book, chapters=chapter, verses=number, clean=False))
  return " ".join(text.replace("¶", " ").split())


def pairs(books=None):
  """(reference, English, Spanish) of every verse both Bibles have, in canonical order; `books`
  (OSIS names) restricts them. Aligned by reference, not by iterating either text: an empty
  verse in one must not shift the other."""
  en = open_bible("bible_en_es", "engKJV2006eb", "sword-text-kjv")
  es = open_bible("bible_en_es", "spaRV1909eb", "sword-text-sparv")
  for testament in en.get_structure().get_books().values():
    for book in testament:
      if books is not None and book.osis_name not in books:
        continue
      for chapter, count in enumerate(book.chapter_lengths, 1):
        for number in range(1, count + 1):
          english = verse(en, book.osis_name, chapter, number)
          spanish = verse(es, book.osis_name, chapter, number)
          if english and spanish:
            yield f"{book.osis_name}.{chapter}.{number}", english, spanish


def shifted(chapter):
  """Whether a chapter's [(reference, English, Spanish)] is aligned one verse off: the two Bibles
  number a few chapters differently (Jonah 1:17 is the Spanish 2:1, Numbers 12:16 the Spanish
  13:1, ...), though the module files them under the KJV's numbers. Its Spanish verses then
  match their English neighbours' lengths better than their own (mean |log length ratio| under
  3/4 of the in-place one, Spanish running ~10% shorter)."""
  lengths = [(len(en.split()) + 1, len(es.split()) + 1) for _, en, es in chapter]
  def cost(offset):
    gaps = [abs(np.log(lengths[i][1] / lengths[i + offset][0] / 0.9))
            for i in range(len(lengths)) if 0 <= i + offset < len(lengths)]
    return np.mean(gaps) if len(gaps) >= 3 else np.inf
  return min(cost(-1), cost(1)) < 0.75 * cost(0)


def aligned_pairs():
  """pairs(), less the chapters that are aligned one verse off (`shifted`): 7 chapters."""
  by_chapter = {}
  for reference, english, spanish in pairs():
    by_chapter.setdefault(reference.rsplit(".", 1)[0], []).append((reference, english, spanish))
  return [pair for chapter in by_chapter.values() if not shifted(chapter) for pair in chapter]


def split_of(reference):
  book = reference.split(".")[0]
  return next((s for s, books in SPLIT_BOOKS.items() if book in books), "train")


class BibleEnEs(tfds.core.GeneratorBasedBuilder):
  """KJV verse -> Reina-Valera 1909 verse, aligned by reference."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Debian 12's sword-text-kjv 14.3 and sword-text-sparv 2.60.",
                   "1.1.0": "Without the 7 chapters aligned one verse off."}
  SOURCE = "en"   # the language of `source`; `target` holds the other

  def _info(self):
    text = tfds.features.Text()
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({"id": text, "source": text, "target": text}),
        supervised_keys=("source", "target"), homepage="https://crosswire.org/sword/")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    by_split = {"train": [], "validation": [], "test": []}
    for reference, english, spanish in aligned_pairs():
      source, target = (english, spanish) if self.SOURCE == "en" else (spanish, english)
      by_split[split_of(reference)].append({"id": reference, "source": source, "target": target})
    return {split: self._generate_examples(rows) for split, rows in by_split.items()}

  def _generate_examples(self, rows):
    for row in rows:
      yield row["id"], row


class BibleEsEn(BibleEnEs):
  """Reina-Valera 1909 verse -> KJV verse."""

  SOURCE = "es"
