"""Training-step speed on a GPU: GPT-2 124M and BERT-base in bf16, our step against PyTorch, MFU
against the chip's published bf16 peak.

  bash experiments/benchmarks/gpu_wheels.sh     # here, once: .whl, what the GPU image lacks
  # then one device call with `.whl` carried, which runs this script:
  #   bash experiments/benchmarks/gpu.sh
  .venv/bin/python experiments/benchmarks/accelerator_step.py --smoke    # CPU, seconds (tests)

Shapes: GPT-2 small (12 layers, d 768, 12 heads, MLP 3,072, vocab 50,304, seq 1,024, batch 16)
and BERT-base (the same widths, vocab 30,528, seq 512, batch 32; MLM over 15% of the positions +
NSP); bf16 compute, f32 parameters and AdamW moments, global-norm clipping at 1.0, dropout off.
Ours: `llm.steps.jit_train_step` with `model.dtype=bfloat16`, attention once through cuDNN
(`model.attention_impl=cudnn`) and once through XLA. PyTorch: transformers' `GPT2LMHeadModel` /
`BertForPreTraining` with SDPA attention, bf16 autocast and fused AdamW (eager; `--torch_compile`
adds torch.compile). All run in one process, taking turns (`--steps` steps each, `--rounds`
times, median); a variant that fails to build is reported with its error and the rest go on.

MFU = model FLOPs per step / step time / peak, model FLOPs as in train_step.py (attention counted
whole, causal or not; BERT's MLM transform and output layer where each computes them: ours at
the 15% scored positions, PyTorch's at all); two peaks: the chip's published dense bf16 figure
(`llm.planning.DEVICE_KINDS`) and a bf16 matmul measured in the same run. Memory: the compiled
step's temporaries + arguments (ours), `torch.cuda.max_memory_allocated` (PyTorch). First-step losses are printed side by side:
ours with cuDNN and with XLA start from the same parameters and must agree.
"""
import argparse
import json
import os
import statistics
import sys
import time

# JAX takes 75% of a GPU's memory at start by default; leave PyTorch its share.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step as tb  # noqa: E402  (shapes' FLOPs, synthetic batches, our step)
sys.path.insert(0, str(tb.ROOT))

SHAPES = {
    "gpt": dict(layers=12, embed=768, heads=12, mlp=3072, seq=1024, batch=16, vocab=50304),
    "bert": dict(layers=12, embed=768, heads=12, mlp=3072, seq=512, batch=32, vocab=30528),
}


def ours(s, model, attention):
  """(run, memory): run(n) -> (seconds per step, loss of the first of them); memory() -> bytes
  the step needs."""
  import jax
  step, state, batch, task = tb.build_ours(s, model, dtype="bfloat16", attention_impl=attention)
  compiled = step.lower(state, batch).compile()
  analysis = compiled.memory_analysis()
  memory = lambda: (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
                    if analysis else None)
  holder = [state]
  def run(n):
    start, first = time.perf_counter(), None
    for _ in range(n):
      holder[0], _, sums = compiled(holder[0], batch)
      first = sums if first is None else first
    jax.block_until_ready(holder[0])
    return (time.perf_counter() - start) / n, task.summarize(jax.device_get(first))["loss"]
  return run, memory


def torch_step(s, model, compile_=False):
  import torch
  import transformers
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  quiet = dict(bos_token_id=0, eos_token_id=0) if model == "gpt" else {}   # ids inside vocab
  torch_class = (transformers.GPT2LMHeadModel if model == "gpt"
                 else transformers.BertForPreTraining)
  net = torch_class(tb.hf_config(s, model, attn_implementation="sdpa", **quiet))
  net = net.to(device).train()
  opt = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                          fused=device == "cuda")
  b = {k: torch.from_numpy(v).long().to(device) for k, v in tb.batch_arrays(s, model).items()
       if k != "mlm_positions"}
  def loss_of(b):
    with torch.autocast(device, dtype=torch.bfloat16):
      return tb.torch_loss(net, b, model)
  loss_of = torch.compile(loss_of) if compile_ else loss_of
  def one():
    opt.zero_grad(set_to_none=True)
    loss = loss_of(b)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    return loss.detach()
  sync = torch.cuda.synchronize if device == "cuda" else lambda: None
  def run(n):
    sync()
    start = time.perf_counter()
    losses = [one() for _ in range(n)]
    sync()
    return (time.perf_counter() - start) / n, float(losses[0])
  if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
  return run, lambda: torch.cuda.max_memory_allocated() if device == "cuda" else None


def matmul_peak(n, repeats=10):
  """FLOP/s of a bf16 n^3 matmul through JAX, best of `repeats` after a warm-up."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best


def published_peak(device_kind):
  """(name, bf16 TFLOP/s) from llm.planning's table for a jax device_kind, or (None, None)."""
  try:
    from llm.planning import DEVICE_KINDS
  except Exception as e:  # noqa: BLE001 - llm does not import here: the PyTorch rows still run
    print(f"llm.planning does not import ({type(e).__name__}: {e}); no published peak",
          file=sys.stderr)
    return None, None
  kind = device_kind.lower().replace(" ", "")
  aliases = {"v5lite": "v5e", "v6lite": "v6e", "trillium": "v6e"}
  for alias, name in aliases.items():
    if alias in kind:
      return name, DEVICE_KINDS[name][0]
  for name in sorted(DEVICE_KINDS, key=len, reverse=True):
    if name in kind:
      return name, DEVICE_KINDS[name][0]
  return None, None


def report(rows, header):
  """The markdown rows of one model (and the table's header before the first)."""
  if header:
    print("\n| model | framework | attention | batch x seq | tokens/s | step ms | MFU (published "
          "peak) | MFU (measured matmul) | memory GiB | first-step loss | ours / it |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
  pct = lambda x: f"{100 * x:.1f}%" if x is not None else "n/a"
  for r in rows:
    if "failed" in r:
      print(f"| {r['model']} | {r['framework']} | {r['attention']} | failed: {r['failed']} "
            "| | | | | | | |", flush=True)
      continue
    memory = f"{r['memory_gib']:.1f}" if r["memory_gib"] is not None else "n/a"
    ratio = f"{r['ours_over_it']:.2f}x" if r["ours_over_it"] is not None else "n/a"
    print(f"| {r['model']} | {r['framework']} | {r['attention']} | {r['batch']} x {r['seq']} | "
          f"{r['tokens_per_s']:,.0f} | {r['step_ms']:.1f} | {pct(r['mfu_published'])} | "
          f"{pct(r['mfu_measured'])} | {memory} | {r['first_loss']:.4f} | {ratio} |", flush=True)


def measure(model, s, attention, args, device_kind, peak_tflops, measured):
  """The rows of one model: every variant built, then timed in turns."""
  variants, failed = {}, {}
  builders = {("ours", a): (lambda a=a: ours(s, model, a)) for a in attention}
  if not args.no_torch:
    builders[("torch", "sdpa")] = lambda: torch_step(s, model, args.torch_compile)
  for key, build in builders.items():
    try:
      run, memory = build()
      first_loss = run(1)[1]   # the first step also compiles (torch.compile) and warms up
      variants[key] = (run, memory(), first_loss)
    except Exception as e:  # noqa: BLE001 - a variant this machine cannot run: say why, go on
      failed[key] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
      print(f"{model} {key[0]} ({key[1]}) failed: {failed[key]}", file=sys.stderr, flush=True)
  seconds = {key: [] for key in variants}
  for _ in range(args.rounds):
    for key, (run, _, _) in variants.items():
      seconds[key].append(run(args.steps)[0])
  tokens = s["batch"] * s["seq"]
  base = next((k for k in variants if k[0] == "ours"), None)
  rows = []
  for key, (_, memory, first_loss) in variants.items():
    step_s = statistics.median(seconds[key])
    flops = tb.model_flops(s, model, mlm_at_chosen=key[0] == "ours")
    rows.append({
        "model": model, "framework": key[0], "attention": key[1], "device": device_kind,
        "batch": s["batch"], "seq": s["seq"], "vocab": s["vocab"], "tokens_per_s": tokens / step_s,
        "step_ms": 1e3 * step_s, "first_loss": first_loss, "model_flops": flops,
        "mfu_published": flops / step_s / (peak_tflops * 1e12) if peak_tflops else None,
        "mfu_measured": flops / step_s / measured, "memory_gib": memory / 2**30 if memory else None,
        "ours_over_it": step_s / statistics.median(seconds[base]) if base else None})
  return rows + [{"model": model, "framework": k[0], "attention": k[1], "failed": why}
                 for k, why in failed.items()]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default="gpt,bert")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--attention", default=None,
                      help="ours' attention_impl values, comma-separated (default: cudnn,xla on "
                           "a GPU, xla elsewhere)")
  parser.add_argument("--torch_compile", action="store_true")
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument("--json", help="also write the rows here, one JSON object per line, as "
                                     "each model is done")
  parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: seconds")
  args = parser.parse_args()
  import jax
  platform = jax.devices()[0].platform
  device_kind = jax.devices()[0].device_kind
  if platform == "cpu" and not args.smoke:
    raise SystemExit("JAX sees no accelerator (platform cpu): GPT-2 sizes would run for hours; "
                     "check the CUDA plugin, or pass --smoke")
  attention = (args.attention or ("cudnn,xla" if platform == "gpu" else "xla")).split(",")
  if args.smoke:
    args.rounds, args.steps = 1, 1
  versions = {"jax": jax.__version__}
  for name in ("flax", "torch", "transformers"):
    try:
      versions[name] = __import__(name).__version__
    except ImportError:
      pass
  peak_name, peak_tflops = published_peak(device_kind)
  measured = matmul_peak(256 if args.smoke else 8192)
  print(f"device: {device_kind} ({platform}); {', '.join(f'{k} {v}' for k, v in versions.items())}")
  print(f"bf16 peak: published {f'{peak_tflops} TFLOP/s ({peak_name})' if peak_tflops else 'unknown'}"
        f", measured matmul {measured / 1e12:.1f} TFLOP/s", flush=True)
  if args.json:
    open(args.json, "w").close()
  ran = False
  for i, model in enumerate(args.models.split(",")):
    s = dict(tb.SMOKE if args.smoke else SHAPES[model])
    rows = measure(model, s, attention, args, device_kind, peak_tflops, measured)
    report(rows, header=i == 0)
    if args.json:   # a run cut short keeps what it measured
      with open(args.json, "a") as f:
        for r in rows:
          f.write(json.dumps(dict(r, versions=versions, measured_matmul_flops=measured)) + "\n")
    ran |= any("failed" not in r and r["framework"] == "ours" for r in rows)
  if not ran:
    raise SystemExit("no variant of ours ran")


if __name__ == "__main__":
  main()
