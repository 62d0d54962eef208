"""Samples text from the latest checkpoint of a causal (GPT) model.

  python -m llm.generate --config=configs/gpt_tiny.py --workdir=/tmp/gpt_tiny --prompt="The war"
Each new token re-runs the model over the whole window (no KV cache yet), which is fine for the
small models trained here. --temperature=0 is greedy decoding; --top_k=0 samples the full softmax.
"""
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from llm import checkpoint, cli, lora, metrics, parallel, weights
from llm.data import pipeline
from llm.data.tokenizer import BOS, EOS
from llm.models import build_model

flags.DEFINE_string("prompt", "", "Text to continue (empty = start of a document).")
flags.DEFINE_integer("max_new_tokens", 64, "How many tokens to add at most.")
flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 = greedy.")
flags.DEFINE_integer("top_k", 40, "Sample among the k most likely tokens; 0 = all.")
flags.DEFINE_integer("num_samples", 1, "How many continuations.")
flags.DEFINE_integer("sample_seed", 0, "Random seed for sampling.")


def sample_next(logits, rng, temperature, top_k):
  """(batch, vocab) logits -> (batch,) token ids."""
  if temperature == 0:
    return jnp.argmax(logits, -1)
  logits = logits.astype(jnp.float32) / temperature
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  return jax.random.categorical(rng, logits)


def generate(model, params, prompt_ids, max_new_tokens, temperature, top_k, num_samples, seed):
  """Continues `prompt_ids` (a list starting with <s>); returns one id list per sample."""
  length = len(prompt_ids) + max_new_tokens
  tokens = np.zeros((num_samples, length), np.int32)
  tokens[:, :len(prompt_ids)] = prompt_ids

  @jax.jit
  def step(tokens, index, rng):
    batch = {"inputs": tokens, "segment_ids": (jnp.arange(length) < index).astype(jnp.int32)
             [None].repeat(num_samples, 0)}
    logits = model.apply({"params": params}, batch)["lm"][:, index - 1]
    return tokens.at[:, index].set(sample_next(logits, rng, temperature, top_k))

  rng, tokens = jax.random.PRNGKey(seed), jnp.asarray(tokens)
  for index in range(len(prompt_ids), length):
    tokens = step(tokens, index, jax.random.fold_in(rng, index))
  out = []
  for row in np.asarray(tokens):
    new = list(row[len(prompt_ids):])
    out.append(list(prompt_ids) + (new[:new.index(EOS)] if EOS in new else new))
  return out


def generate_from_checkpoint(config, workdir):
  f = flags.FLAGS
  cli.resolve_config(config, jax.device_count())
  if config.model.family != "decoder":
    raise ValueError(f"llm.generate needs model.family='decoder' (e.g. configs/gpt_tiny.py), "
                     f"not {config.model.family!r}")
  if f.temperature < 0 or f.top_k < 0 or f.max_new_tokens <= 0 or f.num_samples <= 0:
    raise ValueError("--temperature and --top_k must be >= 0, --max_new_tokens and "
                     "--num_samples > 0")
  workdir = cli.workdir_path(workdir, create=False)
  manager = checkpoint.make_manager(workdir, config.keep_checkpoints)
  step = checkpoint.latest_step(manager)
  tok = pipeline.load_tokenizer(config, pipeline.prepare_corpus(config))
  prompt_ids = [BOS] + tok.encode(f.prompt)
  if len(prompt_ids) + f.max_new_tokens > config.model.max_len:
    raise ValueError(f"prompt ({len(prompt_ids)} tokens) + --max_new_tokens={f.max_new_tokens} "
                     f"is longer than model.max_len={config.model.max_len}")
  mesh = parallel.make_mesh(config.mesh)
  model = build_model(config, heads=("lm",))
  params = lora.merge(weights.restore_params(manager, step, config, mesh), config.lora)
  samples = generate(model, params, prompt_ids, f.max_new_tokens, f.temperature, f.top_k,
                     f.num_samples, f.sample_seed)
  for i, ids in enumerate(samples):
    metrics.log(f"--- sample {i} (step {step})\n{tok.decode(ids[1:])}")
  return samples


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.run(generate_from_checkpoint, cli.FLAGS.config, cli.FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
