"""English-Spanish verse pairs: the King James Version (Debian's sword-text-kjv, module
engKJV2006eb) and the Reina-Valera 1909 (sword-text-sparv, spaRV1909eb), aligned by reference
(both use the KJV's versification), as TFDS data for translation (configs/translate.py), one
builder per direction (`bible_en_es`, `bible_es_en`).

Every verse both Bibles have is one example (31,084 of 31,102 references; 791 k English and
703 k Spanish words):

  id       the reference, e.g. Gen.1.1
  source   the verse in the source language (markup, footnotes, the KJV's paragraph marks removed)
  target   the verse in the target language

Validation and test are whole books, chosen so that no verse, chapter or parallel passage (the
Gospels, Kings / Chronicles, Ephesians / Colossians, a Psalm repeated) is on both sides of a split:
validation Esther and Philippians (271 pairs), test Ruth, Jonah, Galatians, James and 1 John (494).
The rest (30,319 pairs) is train. Reading both Bibles takes ~2 s.
"""
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


def split_of(reference):
  book = reference.split(".")[0]
  return next((s for s, books in SPLIT_BOOKS.items() if book in books), "train")


class BibleEnEs(tfds.core.GeneratorBasedBuilder):
  """KJV verse -> Reina-Valera 1909 verse, aligned by reference."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Debian 12's sword-text-kjv 14.3 and sword-text-sparv 2.60."}
  SOURCE = "en"   # the language of `source`; `target` holds the other

  def _info(self):
    text = tfds.features.Text()
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({"id": text, "source": text, "target": text}),
        supervised_keys=("source", "target"), homepage="https://crosswire.org/sword/")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    by_split = {"train": [], "validation": [], "test": []}
    for reference, english, spanish in pairs():
      source, target = (english, spanish) if self.SOURCE == "en" else (spanish, english)
      by_split[split_of(reference)].append({"id": reference, "source": source, "target": target})
    return {split: self._generate_examples(rows) for split, rows in by_split.items()}

  def _generate_examples(self, rows):
    for row in rows:
      yield row["id"], row


class BibleEsEn(BibleEnEs):
  """Reina-Valera 1909 verse -> KJV verse."""

  SOURCE = "es"
