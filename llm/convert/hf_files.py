"""Hugging Face model folders on disk: config.json and model.safetensors, read and written the
same way for every family (hf_bert.py, hf_gpt2.py, hf_llama.py, hf_t5.py hold the name maps)."""
import json
import os
import pathlib

from safetensors.numpy import load_file, save_file


def require_files(path, kind):
  """`path` as a Path after checking it is a folder with config.json and model.safetensors;
  `kind` names what it should be ('a Hugging Face GPT-2 folder') in the error."""
  path = pathlib.Path(path).expanduser()
  if path.is_file():
    raise FileNotFoundError(f"{path} is a file; expected {kind} (config.json + "
                            f"model.safetensors)")
  for name in ("config.json", "model.safetensors"):
    if not (path / name).is_file():
      raise FileNotFoundError(f"{path / name} does not exist; expected {kind} with config.json "
                              f"and model.safetensors")
  return path


def read_config(folder):
  """config.json of `folder` as a dict."""
  path = pathlib.Path(folder) / "config.json"
  try:
    config = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e})") from None
  if not isinstance(config, dict):
    raise ValueError(f"{path} holds a {type(config).__name__}, not a JSON object")
  return config


def read_tensors(folder):
  """model.safetensors of `folder` as {name: numpy array}."""
  path = pathlib.Path(folder) / "model.safetensors"
  try:
    return load_file(path)
  except Exception as e:  # noqa: BLE001 - safetensors' own error type is not a ValueError
    raise ValueError(f"{path} could not be read ({type(e).__name__}: {e})") from e


def write(out_dir, tensors, config):
  """Writes model.safetensors and config.json into `out_dir` (created if missing)."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  # transformers refuses safetensors files without a 'format' entry in their metadata.
  save_file(tensors, out_dir / "model.safetensors", metadata={"format": "pt"})
  # safetensors writes through a private temporary file (mode 0600): give it its siblings' mode.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(out_dir / "model.safetensors", 0o666 & ~umask)
  (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
  return out_dir


def check_values(config, expected, path, family):
  """Raises ValueError at the first `expected` {key: value} that `config` (of the file at
  `path`) does not have: a setting our model of `family` does not compute."""
  for key, value in expected.items():
    if config.get(key, value) != value:
      raise ValueError(f"{path} has {key}={config.get(key)!r}; only {family} checkpoints with "
                       f"{key}={value!r} map onto our model")
