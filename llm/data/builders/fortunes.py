"""The BSD fortune cookie files (Debian's fortunes and fortunes-min), as a TFDS dataset: one
document per fortune (~15 k quotations, jokes and verses; a line holding `%` ends one)."""
import tensorflow_datasets as tfds

from llm.data.builders.text_corpus import TextCorpus, installed, tidy

FORTUNES = "usr/share/games/fortunes"


class Fortunes(TextCorpus):
  """Fortune cookies, one per document."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "/usr/share/games/fortunes/* of Debian 12's fortunes(-min)."}
  HOMEPAGE = "https://packages.debian.org/bookworm/fortunes"

  def documents(self):
    folders = [installed("fortunes", "fortunes and fortunes-min (apt)", f"apt/{package}/{FORTUNES}",
                         "/" + FORTUNES) for package in ("fortunes-min", "fortunes")]
    files = {p.name: p for folder in folders for p in folder.iterdir()
             if p.is_file() and not p.suffix}   # .dat indexes and .u8 links are not text
    for name, path in sorted(files.items()):
      text = path.read_text(encoding="utf-8", errors="replace")
      for i, record in enumerate(text.split("\n%\n")):
        yield f"{name}/{i}", tidy(record.removesuffix("\n%"))
