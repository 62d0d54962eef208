"""Text from a trained model (what llm.generate runs): the weights of a workdir or an init,
prompts tokenized (optionally in the tokenizer's chat template), decoded together by the
decoding library, and the samples with the decoding speed."""
import dataclasses
import json

import jax

from llm import checkpoint, cli, config_checks, decoding, lora, parallel, runlog, transfer
from llm import weights
from llm.data import corpora, tokenizer as tokenizer_lib
from llm.models import build_model
from llm.models.generation import DECODING

# Prompts x samples decoded together at most (one batch: its memory grows with the count).
MAX_ROWS = 1024


@dataclasses.dataclass(frozen=True)
class Request:
  """What to generate; the fields are llm.generate's flags (seed is --sample_seed)."""
  prompts: tuple = ("",)
  max_new_tokens: int = 64
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  num_beams: int = 1
  length_penalty: float = 1.0
  num_samples: int = 1
  seed: int = 0
  format: str = "text"
  name: str = ""
  chat: bool = False

  def settings(self, stop_ids=()):
    return decoding.Settings(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                             top_k=self.top_k, top_p=self.top_p, num_beams=self.num_beams,
                             length_penalty=self.length_penalty, stop_ids=tuple(stop_ids),
                             seed=self.seed)


def chat_prompt(tok, text):
  """`text` as one user message in the tokenizer's chat template, ready for the reply."""
  template = getattr(tok, "chat_template", None)
  if not template:
    raise ValueError(f"--chat: the tokenizer {tok.path} has no chat template")
  import jinja2
  return jinja2.Environment().from_string(template).render(
      messages=[{"role": "user", "content": text}], add_generation_prompt=True)


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


def _check(config, request):
  """ValueError for a request the resolved config's model cannot serve, before it loads."""
  if request.format not in ("text", "json"):
    raise ValueError(f"--format={request.format!r}: expected 'text' or 'json'")
  if config.model.family not in DECODING:
    raise ValueError("llm.generate needs a decoder or an encoder-decoder (model.family="
                     "'decoder' or 'encoder_decoder'); an encoder has no output to continue")
  if config.model.prompt_length:
    raise ValueError("llm.generate does not decode soft prompts (model.prompt_length > 0)")
  rows = request.num_samples * len(request.prompts)
  if not 1 <= rows <= MAX_ROWS:
    raise ValueError(f"--num_samples={request.num_samples} x {len(request.prompts)} prompts "
                     f"must make 1 to {MAX_ROWS} rows, decoded together")
  if request.num_samples > 1 and request.temperature == 0:
    raise ValueError(f"--num_samples={request.num_samples}: greedy decoding and beam search give "
                     f"the same text every time; set --temperature > 0 to sample")
  vocab = config.vocab_size + config.extra_ids
  for flag, value in (("top_k", request.top_k), ("num_beams", request.num_beams)):
    if value > vocab:
      raise ValueError(f"--{flag}={value} must be at most the vocabulary's {vocab} tokens")


def generate_text(config, workdir, request):
  """The samples ({"prompt", "text", "ids"} per prompt and sample) of `request`; with
  request.name also written to <workdir>/generate_<name>.json, with format="json" printed as
  one JSON line (with the decoding speed)."""
  decoding.check(request.settings())   # bad flags fail before anything loads
  if request.name:
    cli.check_result_name(request.name)
    if not workdir:
      raise ValueError(f"--name={request.name} writes <workdir>/generate_{request.name}.json: "
                       f"give --workdir")
    output = (cli.workdir_path(workdir, create=False, writable=True)
              / f"generate_{request.name}.json")
  config_checks.resolve_config(config, jax.device_count())
  _check(config, request)
  tok = tokenizer_lib.load_tokenizer(config, corpora.prepare_corpus(config))
  settings = request.settings([tok.eos_id])
  texts = [p for p in request.prompts for _ in range(request.num_samples)]
  inputs = [chat_prompt(tok, t) for t in request.prompts] if request.chat else request.prompts
  generation = DECODING[config.model.family]
  prompts = [generation.prompt_ids(tok, tok.encode(t)) for t in inputs
             for _ in range(request.num_samples)]
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
  if request.format == "json" and jax.process_index() == 0:
    print(json.dumps(result), flush=True)
  if request.name and jax.process_index() == 0:
    output.write_text(json.dumps(result))
  return samples
