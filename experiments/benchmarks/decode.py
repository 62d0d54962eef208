"""Decode speed: SmolLM2-135M (f32, greedy, 128 new tokens) with our decoding engine against
transformers (PyTorch) `generate` on the same GGUF weights, alternated in one run, and against
the memory-bandwidth bound (weight bytes per step / copy bandwidth measured here).

  .venv/bin/python experiments/benchmarks/decode.py [--repeats=3] [--new_tokens=128]
Needs the test extras (torch, transformers, accelerate: `bash scripts/setup.sh --test`).
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))   # the repository root

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from llm import decoding, gguf_files, state as state_lib  # noqa: E402
from llm.base_config import base_config  # noqa: E402
from llm.convert import gguf_llama  # noqa: E402
from llm.data.bpe import BpeTokenizer  # noqa: E402
from llm.models import build_model, model_config  # noqa: E402

PROMPTS = ["The capital of France is", "Once upon a time, in a small village,",
           "The three laws of thermodynamics are", "def quicksort(items):",
           "A healthy breakfast includes", "The French Revolution began in",
           "Photosynthesis is the process by which", "To make a cup of tea, first"]


def copy_bandwidth(megabytes=512, repeats=5):
  """Memory traffic per second of a large array copy (bytes read + bytes written)."""
  src = np.ones(megabytes * 2**20 // 4, np.float32)
  dst = np.empty_like(src)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    np.copyto(dst, src)
    times.append(time.perf_counter() - start)
  return 2 * src.nbytes / min(times)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--new_tokens", type=int, default=128)
  args = parser.parse_args()
  import torch
  import transformers
  transformers.logging.disable_progress_bar()

  gguf_file = gguf_files.GgufFile("smollm2")
  tok = BpeTokenizer(gguf_file)
  config = base_config()
  config.update(gguf_llama.model_overrides(gguf_file))
  model = build_model(config, heads=("lm",))
  params = jax.device_put(gguf_llama.load_params(gguf_file, model_config(config)))
  weight_bytes = 4 * state_lib.count_params(params)
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      gguf_file.path.parent, gguf_file=gguf_file.path.name, dtype=torch.float32).eval()
  settings = decoding.Settings(max_new_tokens=args.new_tokens)   # no stop token: all 128

  def ours(prompts):
    outputs, steps, seconds = decoding.generate(model, params, prompts, settings, timed=True)
    assert steps == args.new_tokens
    return outputs, seconds

  def theirs(prompts):
    tok_ids = [torch.tensor(p) for p in prompts]
    length = max(map(len, prompts))
    ids = torch.zeros((len(prompts), length), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(tok_ids):   # left-padded, as generate expects for decoders
      ids[row, length - len(p):] = p
      mask[row, length - len(p):] = 1
    with torch.no_grad():
      start = time.perf_counter()
      # eos_token_id=None: like ours without stop ids, it never stops before the last token.
      out = reference.generate(ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                               do_sample=False, eos_token_id=None, pad_token_id=tok.eos_id)
      seconds = time.perf_counter() - start
    return [row[length:].tolist() for row in out], seconds

  bandwidth = copy_bandwidth()
  print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}")
  print(f"weights {weight_bytes / 1e6:.0f} MB f32; copy bandwidth {bandwidth / 1e9:.2f} GB/s")
  rows = []
  for batch in (1, 8):
    prompts = [tok.encode(p) for p in PROMPTS[:batch]]
    ours(prompts), theirs([p[:4] for p in prompts])   # compile / warm up
    times = {"ours": [], "transformers": []}
    same = None
    for _ in range(args.repeats):   # alternated, so both see the same machine state
      mine, t_ours = ours(prompts)
      other, t_theirs = theirs(prompts)
      times["ours"].append(t_ours)
      times["transformers"].append(t_theirs)
      same = sum(a == b for a, b in zip(mine, other))
    rate = {k: batch * args.new_tokens / statistics.median(v) for k, v in times.items()}
    bound = batch * bandwidth / weight_bytes   # each step reads every weight once
    rows.append((batch, rate["ours"], rate["transformers"], rate["ours"] / rate["transformers"],
                 bound, rate["ours"] / bound, same))
  print("\n| batch | ours tokens/s | transformers tokens/s | ours / transformers | "
        "bandwidth bound tokens/s | ours / bound | identical greedy outputs |")
  print("|---|---|---|---|---|---|---|")
  for batch, o, t, ratio, bound, frac, same in rows:
    print(f"| {batch} | {o:.1f} | {t:.1f} | {ratio:.2f}x | {bound:.1f} | {frac:.0%} | "
          f"{same} of {batch} |")


if __name__ == "__main__":
  main()
