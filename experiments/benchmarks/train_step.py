"""Training-step speed: our jitted AdamW step against Hugging Face Flax and PyTorch eager.

  bash experiments/benchmarks/setup_hf_flax.sh     # once: .venv-hf with transformers 4.57.6
  .venv/bin/python experiments/benchmarks/train_step.py [--rounds=4] [--steps=2] [--smoke]

Shapes (the issue's): d 512, 8 layers, 8 heads, MLP 2048, seq 256, batch 8, vocab 8,000, f32,
dropout off everywhere (the implementations draw it differently). GPT: causal LM over every
position. BERT: masked LM + next-sentence prediction; 15% of each row's positions are targets;
FlaxBertForPreTraining and PyTorch's BertForPreTraining compute vocabulary logits at every
position, ours only at the chosen ones (`mlm_positions`, as the original BERT does). Each framework
runs its own AdamW with global-norm clipping at 1.0 (what our default config does) over all
parameters; ours also keeps its non-finite-step guard.

Each (framework, model) is a worker process holding its compiled step; the driver asks them in
turn for `--steps` steps, `--rounds` times, so they alternate on the same idle machine and never
run at the same time. Reported: median tokens/s over rounds; MFU = model FLOPs/s over the f32
matmul peak measured in the same run (the best of JAX and PyTorch on a 2048^3 matmul).
--smoke: tiny shapes, GPT only, one step: seconds, run by the tests.
--hugepages: every worker (ours and the others alike) runs with
GLIBC_TUNABLES=glibc.malloc.hugetlb=1, glibc's malloc backing its large blocks with transparent
huge pages. XLA's CPU runtime allocates each step's temporaries afresh (~1.4 GB here): with 4 KiB
pages that is ~350,000 page faults and the matching unmaps a step, ~1,300 with huge pages.
Model FLOPs per step = tokens x (6 N + 12 L s d): N the parameters of every matmul (layers, MLM
transform, output layer; not the embedding lookups), the second term attention's scores and
weighted sum (causal or not, counted whole).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
HF_PYTHON = ROOT / ".venv-hf" / "bin" / "python"

SHAPES = dict(layers=8, embed=512, heads=8, mlp=2048, seq=256, batch=8, vocab=8000)
SMOKE = dict(layers=2, embed=64, heads=2, mlp=128, seq=32, batch=2, vocab=512)


def model_flops(s, model, mlm_at_chosen=False):
  """Model FLOPs of one step; `mlm_at_chosen`: BERT's MLM transform and output layer run only at
  the chosen 15% of positions (ours), not at every one (what this table counts for all three)."""
  d, L = s["embed"], s["layers"]
  matmul_params = L * (4 * d * d + 2 * d * s["mlp"]) + d * s["vocab"]
  if model == "bert":
    matmul_params += d * d + d * d + 2 * d      # MLM transform, pooler, NSP classifier
  tokens = s["batch"] * s["seq"]
  flops = tokens * (6 * matmul_params + 12 * L * s["seq"] * d)
  if model == "bert" and mlm_at_chosen:
    unscored = s["batch"] * (s["seq"] - mlm_count(s))
    flops -= 6 * unscored * (d * s["vocab"] + d * d)
  return flops


def mlm_count(s):
  """How many positions of a row BERT scores (as bert.mask_tokens: 15%, never [CLS])."""
  return max(1, round(0.15 * s["seq"]))


def batch_arrays(s, model):
  import numpy as np
  rng = np.random.default_rng(0)
  shape = (s["batch"], s["seq"])
  inputs = rng.integers(5, s["vocab"], shape).astype(np.int32)
  if model == "gpt":
    return {"inputs": inputs, "targets": rng.integers(5, s["vocab"], shape).astype(np.int32)}
  # As bert.mask_tokens: a fixed 15% of each row's positions (never the first, [CLS]).
  count = mlm_count(s)
  positions = np.sort(np.stack([1 + rng.permutation(s["seq"] - 1)[:count]
                                for _ in range(s["batch"])]), axis=1).astype(np.int32)
  chosen = np.zeros(shape, bool)
  np.put_along_axis(chosen, positions, True, axis=1)
  return {"inputs": inputs, "targets": np.where(chosen, inputs, 0).astype(np.int32),
          "mlm_positions": positions,
          "token_types": (np.arange(s["seq"]) >= s["seq"] // 2).astype(np.int32)[None].repeat(
              s["batch"], 0),
          "nsp_labels": rng.integers(0, 2, s["batch"]).astype(np.int32)}


# --- workers: each returns step() -> loss (float, synchronised) -----------------------------

def build_ours(s, model, **settings):
  """(jitted step, state, batch on the device, task) for shapes `s`; `settings` are further
  config.model values (dtype, attention_impl, ...)."""
  import jax
  import numpy as np
  sys.path.insert(0, str(ROOT))
  from llm import cli, optim, parallel, state as state_lib
  from llm.models import build_model
  from llm.tasks import get_task
  from llm.steps import jit_train_step
  name = "gpt_tiny" if model == "gpt" else "bert_tiny"
  config = cli.load_config(ROOT / "configs" / f"{name}.py")
  config.model.update(num_layers=s["layers"], embed_dim=s["embed"], num_heads=s["heads"],
                      mlp_dim=s["mlp"], max_len=s["seq"], dropout_rate=0.0,
                      attention_dropout_rate=0.0, **settings)
  config.update(vocab_size=s["vocab"], seq_len=s["seq"], batch_size=s["batch"],
                mesh=dict(data=1, fsdp=1, tensor=1))
  task = get_task(config.objective)
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  model_ = build_model(config)
  optimizer, schedule = optim.make_optimizer(config)
  _, shardings = state_lib.state_shardings(model_, optimizer, config, mesh)
  state = state_lib.init_state(model_, optimizer, config, shardings)
  step = jit_train_step(model_, task, optimizer, schedule, config, mesh, shardings)
  batch = batch_arrays(s, model)
  batch["segment_ids"] = np.ones_like(batch["inputs"])
  batch["positions"] = np.broadcast_to(np.arange(s["seq"], dtype=np.int32), batch["inputs"].shape)
  return step, state, jax.device_put(batch), task


def ours(s, model):
  import jax
  step, state, batch, task = build_ours(s, model)
  holder = [state]
  def run():
    holder[0], _, sums = step(holder[0], batch)
    return task.summarize(jax.device_get(sums))["loss"]
  return run


def hf_config(s, model, **extra):
  """transformers' GPT2Config / BertConfig for shapes `s`, dropout off; `extra`: more fields."""
  import transformers
  if model == "gpt":
    return transformers.GPT2Config(n_embd=s["embed"], n_layer=s["layers"], n_head=s["heads"],
                                   n_inner=s["mlp"], n_positions=s["seq"], vocab_size=s["vocab"],
                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **extra)
  return transformers.BertConfig(hidden_size=s["embed"], num_hidden_layers=s["layers"],
                                 num_attention_heads=s["heads"], intermediate_size=s["mlp"],
                                 max_position_embeddings=s["seq"], vocab_size=s["vocab"],
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                 **extra)


def torch_loss(net, b, model):
  """The loss of PyTorch batch `b` (logits taken in f32): mean LM loss, or MLM + NSP."""
  import torch
  ce = torch.nn.functional.cross_entropy
  if model == "gpt":
    logits = net(input_ids=b["inputs"]).logits
    return ce(logits.float().reshape(-1, logits.shape[-1]), b["targets"].reshape(-1))
  out = net(input_ids=b["inputs"], token_type_ids=b["token_types"])
  labels = torch.where(b["targets"] > 0, b["targets"], -100)
  logits = out.prediction_logits.float()
  return (ce(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
          + ce(out.seq_relationship_logits.float(), b["nsp_labels"]))


def hf_flax(s, model):
  import jax
  import jax.numpy as jnp
  import optax
  import transformers
  assert transformers.__version__.startswith("4.57"), transformers.__version__
  flax_class = (transformers.FlaxGPT2LMHeadModel if model == "gpt"
                else transformers.FlaxBertForPreTraining)
  net = flax_class(hf_config(s, model), input_shape=(1, s["seq"]), seed=0)
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax.adamw(1e-4, b1=0.9, b2=0.95, weight_decay=0.1))
  params = net.params
  opt_state = tx.init(params)
  batch = batch_arrays(s, model)
  batch.pop("mlm_positions", None)   # HF scores every position
  batch = jax.device_put(batch)

  def loss_fn(params, batch):
    if model == "gpt":
      logits = net(batch["inputs"], params=params, train=False).logits
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()
    out = net(batch["inputs"], token_type_ids=batch["token_types"], params=params, train=False)
    weights = (batch["targets"] > 0).astype(jnp.float32)
    mlm = optax.softmax_cross_entropy_with_integer_labels(out.prediction_logits, batch["targets"])
    nsp = optax.softmax_cross_entropy_with_integer_labels(out.seq_relationship_logits,
                                                          batch["nsp_labels"])
    return jnp.sum(mlm * weights) / jnp.maximum(weights.sum(), 1) + nsp.mean()

  @jax.jit
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  holder = [params, opt_state]
  def run():
    holder[0], holder[1], loss = step(holder[0], holder[1], batch)
    return float(loss)
  return run


def torch_eager(s, model):
  import torch
  import transformers
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  torch_class = (transformers.GPT2LMHeadModel if model == "gpt"
                 else transformers.BertForPreTraining)
  net = torch_class(hf_config(s, model))
  net.train()
  opt = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
  b = {k: torch.from_numpy(v).long() for k, v in batch_arrays(s, model).items()
       if k != "mlm_positions"}
  def run():
    opt.zero_grad(set_to_none=True)
    loss = torch_loss(net, b, model)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    return float(loss.detach())
  return run


def matmul_peak(n, rounds):
  """{'jax': FLOP/s, 'torch': FLOP/s} of an f32 n^3 matmul, best of `rounds` x 5 (alternated)."""
  import jax
  import jax.numpy as jnp
  import torch
  torch.set_num_threads(os.cpu_count())
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  b = torch.randn(n, n)
  runs = {"jax": lambda: f(a, a).block_until_ready(), "torch": lambda: b @ b}
  best = {k: float("inf") for k in runs}
  for k in runs:
    runs[k]()
  for _ in range(rounds):
    for k, run in runs.items():
      for _ in range(5):
        start = time.perf_counter()
        run()
        best[k] = min(best[k], time.perf_counter() - start)
  return {k: 2 * n ** 3 / v for k, v in best.items()}


WORKERS = {"ours": ours, "hf_flax": hf_flax, "torch": torch_eager}


def worker(spec, smoke):
  kind, model = spec.split(":")
  s = SMOKE if smoke else SHAPES
  run = WORKERS[kind](s, model)
  run()   # compile / warm up
  print(json.dumps({"ready": True}), flush=True)
  for line in sys.stdin:
    n = int(line)
    start = time.perf_counter()
    for _ in range(n):
      loss = run()
    print(json.dumps({"seconds": (time.perf_counter() - start) / n, "loss": loss}), flush=True)


HUGEPAGES = "glibc.malloc.hugetlb=1"


def start(spec, python, smoke, hugepages=False):
  cmd = [str(python), __file__, f"--worker={spec}"] + (["--smoke"] if smoke else [])
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  if hugepages:
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), HUGEPAGES]))
  proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
  reply = proc.stdout.readline()
  if not reply:
    raise SystemExit(f"worker {spec} failed to start (see its error above)")
  return proc


def ask(proc, steps):
  proc.stdin.write(f"{steps}\n")
  proc.stdin.flush()
  return json.loads(proc.stdout.readline())


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--steps", type=int, default=2)
  parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: seconds")
  parser.add_argument("--hugepages", action="store_true",
                      help=f"run every worker with GLIBC_TUNABLES={HUGEPAGES}")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args.worker, args.smoke)
  if args.smoke:
    args.rounds, args.steps = 1, 1
  s = SMOKE if args.smoke else SHAPES
  hf = HF_PYTHON.exists()
  if not hf:
    print(f"note: {HF_PYTHON} not found (bash experiments/benchmarks/setup_hf_flax.sh): "
          "Hugging Face Flax columns left out", file=sys.stderr)
  peak = matmul_peak(2048 if not args.smoke else 256, max(args.rounds, 3))
  best = max(peak.values())
  if args.hugepages:
    print(f"every worker runs with GLIBC_TUNABLES={HUGEPAGES}")
  print(f"f32 matmul peak: JAX {peak['jax'] / 1e9:.1f} GFLOP/s, PyTorch "
        f"{peak['torch'] / 1e9:.1f} GFLOP/s; MFU below is against {best / 1e9:.1f}", flush=True)

  print("\n| model | framework | tokens/s | step ms | MFU | ours / it |")
  print("|---|---|---|---|---|---|")
  tokens = s["batch"] * s["seq"]
  for model in ("gpt",) if args.smoke else ("gpt", "bert"):
    kinds = ["ours"] + (["hf_flax"] if hf else []) + ["torch"]
    procs = {k: start(f"{k}:{model}", HF_PYTHON if k == "hf_flax" else sys.executable,
                      args.smoke, args.hugepages) for k in kinds}
    seconds = {k: [] for k in kinds}
    for _ in range(args.rounds):
      for k in kinds:
        reply = ask(procs[k], args.steps)
        if not reply["loss"] == reply["loss"]:   # NaN: not a training step worth timing
          raise SystemExit(f"{k} {model}: loss is NaN")
        seconds[k].append(reply["seconds"])
    for proc in procs.values():
      proc.stdin.close()
      proc.wait()
    ours_tps = tokens / statistics.median(seconds["ours"])
    for k in kinds:
      tps = tokens / statistics.median(seconds[k])
      mfu = model_flops(s, model) / statistics.median(seconds[k]) / best
      print(f"| {model} | {k} | {tps:,.0f} | {1e3 * statistics.median(seconds[k]):.0f} | "
            f"{100 * mfu:.1f}% | {ours_tps / tps:.2f}x |", flush=True)
  print(f"\nmodel FLOPs per step: gpt {model_flops(s, 'gpt'):.3e}, bert {model_flops(s, 'bert'):.3e}")


if __name__ == "__main__":
  main()
