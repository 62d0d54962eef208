"""What the tests share: one config loader, one set of tiny settings, one tiny-model builder,
running an entry point as a user would, and the checkpoint damage a bad disk does.

Nothing here imports JAX at import time: conftest.py imports xla_flags before JAX is loaded."""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Any experiment made small enough for a test: 2 layers of width 64, rows of 32 tokens, batches of
# 16, a log line every step, 2 validation batches, no evaluation or checkpoint along the way.
TINY = {"model.num_layers": 2, "model.embed_dim": 64, "model.num_heads": 4, "model.mlp_dim": 128,
        "seq_len": 32, "batch_size": 16, "log_every": 1, "eval_batches": 2, "eval_every": 0,
        "checkpoint_every": 0}


def xla_flags(devices, optimize=False):
  """XLA_FLAGS of the test processes, in-process and CLI alike: `devices` fake CPU devices, and
  XLA's backend optimisations off. Tests compile far more than they compute (3-5 s per jitted
  function even for a 2-layer model): level 0 compiles about a third faster, and at level 0 the
  older loop emitters compile a tiny step in 1.5-3.5 s where the fusion emitters take 3-5 s
  (at the default level they are 2x slower instead, so optimised runs keep them). Processes use
  the same flags so that in-process and CLI results stay comparable to the last bit. A run whose
  steps take longer than its compiles (MiniLM's 22M parameters: 12 steps in 14 s at level 0)
  and that is compared with no other process is `optimize`d (XLA's default level)."""
  fast = "" if optimize else (" --xla_backend_optimization_level=0"
                              " --xla_cpu_use_fusion_emitters=false")
  return f"--xla_force_host_platform_device_count={devices}{fast}"


def load_config(name, arg=None, **overrides):
  """configs/NAME.py[:arg] as the CLI resolves it, with `overrides` ({"model.x": v, ...})."""
  from llm import cli
  return cli.load_config(ROOT / "configs" / f"{name.removesuffix('.py')}.py", arg, **overrides)


def tiny_config(name="gpt_tiny", arg=None, **overrides):
  """An experiment at TINY size for in-process runs (a 2-step warmup: a test's few steps reach
  the learning rate)."""
  return load_config(name, arg, **{**TINY, "optimizer.warmup_steps": 2, **overrides})


def config_flags(overrides):
  """{"model.x": v, ...} as the command-line flags --config.model.x=v ..."""
  return [f"--config.{k}={v}" for k, v in overrides.items()]


def tiny_overrides(**extra):
  """TINY (and `extra`) as command-line flags."""
  return config_flags({**TINY, **extra})


def tiny_model_config(preset, vocab_size, max_len, embed_dim=32, mlp_dim=64, **model):
  """A base config holding a 2-layer, 4-head model of family `preset` (a models.presets dict,
  or {} for the base model), then `model`'s settings: what in-process model tests build their
  model from."""
  from llm.base_config import base_config
  c = base_config()
  c.vocab_size = vocab_size
  c.model.update(preset)
  c.model.update(num_layers=2, embed_dim=embed_dim, num_heads=4, mlp_dim=mlp_dim,
                 max_len=max_len)
  c.model.update(model)
  return c


def model_and_params(family="decoder", scan=False, vocab=40, **model):
  """A tiny language model of `family` (decoder, llama, t5, transformer) and random params,
  larger than the init so that logits are far from uniform and ties are rare."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from llm.models import build_model, presets
  preset = {"decoder": presets.GPT2, "llama": presets.LLAMA, "t5": presets.T5,
            "transformer": presets.TRANSFORMER}[family]
  c = tiny_model_config(preset, vocab, 64, dropout_rate=0.0, scan_layers=scan, **model)
  m = build_model(c, heads=("lm",))
  batch = {"inputs": jnp.ones((1, 8), jnp.int32)}
  if c.model.family == "encoder_decoder":
    batch["decoder_inputs"] = batch["inputs"]
  params = nn.unbox(m.init(jax.random.PRNGKey(0), batch))["params"]
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = jax.tree.unflatten(tree, [a + 0.3 * jax.random.normal(k, a.shape)
                                     for k, a in zip(keys, leaves)])
  return m, params


def losses(workdir):
  """{step: train/loss} of a run's metrics.jsonl."""
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def run_cli(module, config, workdir, *args, env=None, launcher=(), devices=8, optimize=False):
  """Runs `python -m llm.<module>` like a user would (through `launcher`, a command prefix, if
  given) on `devices` fake CPU devices, compiled as xla_flags says; returns the CompletedProcess.
  Tests that are not about sharding use devices=1: on two cores, eight devices make a
  22M-parameter step 2.5x slower."""
  cmd = [*launcher, sys.executable, "-m", f"llm.{module}", f"--config={config}",
         f"--workdir={workdir}", *args]
  full_env = {**os.environ, "XLA_FLAGS": xla_flags(devices, optimize), **(env or {})}
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=full_env,
                        timeout=600)


def garble(step_dir):
  """Overwrites 8 bytes in the middle of the largest array data file, as a bad disk would:
  a change Orbax itself reads back without noticing."""
  path = max((p for p in (step_dir / "state").rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 8] = bytes(255 - b for b in data[middle:middle + 8])
  path.write_bytes(bytes(data))
  return path
