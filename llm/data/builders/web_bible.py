"""The World English Bible (Debian's sword-text-web, read with pysword), as a TFDS dataset: one
document per chapter (1,388 chapters with text, the deuterocanon's included; ~0.9 M words), one
verse per line, footnotes and Strong's-number markup left out."""
import functools
import pathlib
import re

import tensorflow_datasets as tfds

from llm.data.builders.text_corpus import TextCorpus, data_root, tidy

SWORD = "usr/share/sword"
NOTE = re.compile(r"<note\b.*?</note>", re.S)
TAG = re.compile(r"<[^>]*>")


def open_bible(corpus, module, package):
  """pysword's reader of a SWORD Bible module (e.g. engWEB2015eb from the apt package
  sword-text-web), from /usr/share/sword or where setup.sh --corpora unpacked the package."""
  from pysword.modules import SwordModules
  roots = [data_root() / "apt" / package / SWORD, pathlib.Path("/" + SWORD)]   # setup.sh's first
  root = next((r for r in roots if (r / "mods.d" / f"{module}.conf").is_file()), None)
  if root is None:
    raise FileNotFoundError(f"corpus {corpus!r} needs the SWORD module {module} of the package "
                            f"{package}: run bash scripts/setup.sh --corpora (it looked in "
                            f"{', '.join(map(str, roots))})")
  modules = SwordModules(str(root))
  modules.parse_modules()
  bible = modules.get_bible_from_module(module)
  # pysword inflates a compressed block (dozens of verses) once per verse it reads: keep the
  # last few, so that reading a chapter inflates each block once (60 s -> a few s).
  bible._decompressed_text = functools.lru_cache(maxsize=8)(bible._decompressed_text)
  return bible


def verse_text(markup):
  """A verse's OSIS markup -> its text: footnotes dropped without gluing the words around them
  (pysword's own clean text reads "Godcreated")."""
  text = TAG.sub("", NOTE.sub(" ", markup))
  return re.sub(r"\s+([,.;:!?])", r"\1", " ".join(text.split()))


def chapters(bible):
  """(osis book name, chapter number, [verse markup]) for every chapter, in canonical order."""
  for books in bible.get_structure().get_books().values():
    for book in books:
      for chapter, num_verses in enumerate(book.chapter_lengths, 1):
        yield book.osis_name, chapter, [
            bible.get(books=book.osis_name, chapters=chapter, verses=verse, clean=False)
            for verse in range(1, num_verses + 1)]


class WebBible(TextCorpus):
  """The World English Bible, one chapter per document."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Module engWEB2015eb of Debian 12's sword-text-web."}
  HOMEPAGE = "https://ebible.org/web/"

  def documents(self):
    bible = open_bible("web_bible", "engWEB2015eb", "sword-text-web")
    for book, chapter, verses in chapters(bible):
      yield f"{book}.{chapter}", tidy("\n".join(verse_text(v) for v in verses))
