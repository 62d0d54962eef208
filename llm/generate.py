"""Generates text with a decoder or an encoder-decoder (llm/decoding.py: KV cache, one jitted loop).

  python -m llm.generate --config=configs/gpt_tiny.py --workdir=/tmp/gpt_tiny --prompt="The war"
  python -m llm.generate --config=configs/t5_tiny.py --workdir=/tmp/t5 --prompt="A source text"
Weights: the latest checkpoint in --workdir; without one (or without --workdir) the config's init.
--temperature=0 (the default) is greedy; --num_beams>1 is beam search. --format=json ends with one
JSON line: {"samples": [{"prompt", "text", "ids"}], "new_tokens", "decode_tokens_per_sec"};
--name=NAME writes the same to <workdir>/generate_<name>.json (what a sweep's evaluation reads).
"""
import json

import jax
from absl import app, flags

from llm import checkpoint, cli, config_checks, decoding, lora, parallel, runlog, transfer
from llm import weights
from llm.data import corpora, tokenizer as tokenizer_lib
from llm.models import build_model
from llm.models.generation import DECODING

# Prompts x samples decoded together at most (one batch: its memory grows with the count).
MAX_ROWS = 1024

flags.DEFINE_multi_string("prompt", [""], "Text to continue (a decoder) or to transform (an "
                          "encoder-decoder); repeat the flag for a batch of prompts.")
flags.DEFINE_integer("max_new_tokens", 64, "How many tokens to add at most.")
flags.DEFINE_float("temperature", 0.0, "Softmax temperature; 0 = greedy.")
flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens; 0 = all.")
flags.DEFINE_float("top_p", 1.0, "Sample from the smallest set of tokens holding this mass.")
flags.DEFINE_integer("num_beams", 1, "Beam search with this many beams (1 = no beam search).")
flags.DEFINE_float("length_penalty", 1.0, "Beam score = log-probability / length ** this.")
flags.DEFINE_integer("num_samples", 1, "Continuations per prompt.")
flags.DEFINE_integer("sample_seed", 0, "Random seed for sampling.")
flags.DEFINE_enum("format", "text", ["text", "json"], "text, or a JSON line at the end.")
flags.DEFINE_string("name", "", "Also write the samples and the decoding speed to "
                    "<workdir>/generate_<name>.json.")
flags.DEFINE_bool("chat", False, "Wrap each prompt as a user turn in the tokenizer's chat "
                  "template (GGUF models such as SmolLM2-Instruct).")


def chat_prompt(tok, text):
  """`text` as one user message in the tokenizer's chat template, ready for the reply."""
  template = getattr(tok, "chat_template", None)
  if not template:
    raise ValueError(f"--chat: the tokenizer {tok.path} has no chat template")
  import jinja2
  return jinja2.Environment().from_string(template).render(
      messages=[{"role": "user", "content": text}], add_generation_prompt=True)


def settings_from_flags(stop_ids):
  f = flags.FLAGS
  return decoding.Settings(max_new_tokens=f.max_new_tokens, temperature=f.temperature,
                           top_k=f.top_k, top_p=f.top_p, num_beams=f.num_beams,
                           length_penalty=f.length_penalty, stop_ids=tuple(stop_ids),
                           seed=f.sample_seed)


def load_params(config, workdir, model, mesh, tok=None):
  """(params, where they came from): the workdir's latest checkpoint (refused if `tok` is not
  the tokenizer it was trained with), else config.init."""
  path = cli.workdir_path(workdir, create=False) if workdir else None
  checkpoints = (checkpoint.Checkpoints(path, config.keep_checkpoints, create=False)
                 if path and (path / "checkpoints").is_dir() else None)
  step = checkpoints.latest_step() if checkpoints else None
  if step is not None:
    return (weights.checkpoint_params(checkpoints, step, config, mesh, tok),
            f"step {step} of {path}")
  if not config.init:
    where = f"no checkpoint in {path}/checkpoints" if path else "no --workdir"
    raise FileNotFoundError(f"{where} and no config.init to generate from; train first with "
                            f"llm.train or set --config.init")
  return transfer.init_params(config, model, mesh), f"init={config.init}"


def generate_text(config, workdir):
  f = flags.FLAGS
  decoding.check(settings_from_flags(()))   # bad flags fail before anything loads
  if f.name:
    cli.check_result_name(f.name)
    if not workdir:
      raise ValueError(f"--name={f.name} writes <workdir>/generate_{f.name}.json: give --workdir")
    output = cli.workdir_path(workdir, create=False, writable=True) / f"generate_{f.name}.json"
  config_checks.resolve_config(config, jax.device_count())
  family = config.model.family
  if family not in DECODING:
    raise ValueError("llm.generate needs a decoder or an encoder-decoder (model.family="
                     "'decoder' or 'encoder_decoder'); an encoder has no output to continue")
  if config.model.prompt_length:
    raise ValueError("llm.generate does not decode soft prompts (model.prompt_length > 0)")
  if not 1 <= f.num_samples * len(f.prompt) <= MAX_ROWS:
    raise ValueError(f"--num_samples={f.num_samples} x {len(f.prompt)} prompts must make 1 to "
                     f"{MAX_ROWS} rows, decoded together")
  if f.num_samples > 1 and f.temperature == 0:
    raise ValueError(f"--num_samples={f.num_samples}: greedy decoding and beam search give the "
                     f"same text every time; set --temperature > 0 to sample")
  tok = tokenizer_lib.load_tokenizer(config, corpora.prepare_corpus(config))
  vocab = config.vocab_size + config.extra_ids
  for flag, value in (("top_k", f.top_k), ("num_beams", f.num_beams)):
    if value > vocab:
      raise ValueError(f"--{flag}={value} must be at most the vocabulary's {vocab} tokens")
  settings = settings_from_flags([tok.eos_id])
  texts = [p for p in f.prompt for _ in range(f.num_samples)]
  inputs = [chat_prompt(tok, t) for t in f.prompt] if f.chat else f.prompt
  generation = DECODING[family]
  prompts = [generation.prompt_ids(tok, tok.encode(t)) for t in inputs
             for _ in range(f.num_samples)]
  if not all(prompts):
    raise ValueError(f"an empty --prompt: {tok.path} adds no start token, so give some text")
  if generation.positions(max(map(len, prompts)), settings.max_new_tokens) > config.model.max_len:
    raise ValueError(f"a prompt of {max(map(len, prompts))} tokens + --max_new_tokens="
                     f"{settings.max_new_tokens} is longer than the model's context, "
                     f"model.max_len={config.model.max_len}; shorten the prompt or ask for fewer "
                     f"tokens")
  mesh = parallel.make_mesh(config.mesh)
  model = build_model(config, heads=("lm",))
  params, source = load_params(config, workdir, model, mesh, tok)
  params = lora.merge(params, config.lora)
  outputs, steps, seconds = decoding.generate(model, params, prompts, settings, mesh,
                                              parallel.axis_rules(config), timed=True)
  samples = []
  for text, ids in zip(texts, outputs):
    samples.append({"prompt": text, "text": tok.decode(ids), "ids": ids})
    runlog.log(f"--- {source}: {text!r}\n{tok.decode(ids)}")
  new_tokens = sum(map(len, outputs))
  # Every row runs every step until the last one stops: rows x steps tokens were decoded.
  rate = len(prompts) * steps / seconds
  runlog.log(f"{new_tokens} new tokens, {steps} steps in {seconds:.2f} s "
             f"({rate:,.1f} tokens/s decoded, compile excluded)")
  result = {"samples": samples, "new_tokens": new_tokens, "decode_tokens_per_sec": rate}
  if f.format == "json" and jax.process_index() == 0:
    print(json.dumps(result), flush=True)
  if f.name and jax.process_index() == 0:
    output.write_text(json.dumps(result))
  return samples


def main(argv):
  cli.no_arguments(argv)
  cli.run(generate_text, cli.FLAGS.config, cli.FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
