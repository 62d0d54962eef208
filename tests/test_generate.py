"""llm.generate from the CLI: JSON output, greedy ids against re-running the prefix; what it
refuses, in-process."""
import json
import shutil

import jax
import numpy as np
import pytest

from llm import parallel, weights
from llm.base_config import from_saved
from llm.data import corpora, tokenizer as tokenizer_lib
from llm.evaluation import evaluate_checkpoint
from llm.models import build_model
from llm.text_generation import Request, generate_text

from helpers import tiny_config, tiny_overrides


@pytest.fixture
def gpt_workdir(trained_gpt):
  return trained_gpt   # shared with other tests: read, never written


def test_generate_json_matches_greedy_reference(cli, gpt_workdir, tmp_path):
  gpt_workdir = shutil.copytree(gpt_workdir, tmp_path / "run")   # --name writes into it
  prompts = ["The history of", "In 1990 the"]
  proc = cli("generate", "configs/gpt_tiny.py", gpt_workdir, *tiny_overrides(),
             *[f"--prompt={p}" for p in prompts], "--max_new_tokens=12", "--format=json",
             "--name=greedy")
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  # --name keeps the same result in the workdir, for a sweep's report.
  assert json.loads((gpt_workdir / "generate_greedy.json").read_text()) == out
  assert [s["prompt"] for s in out["samples"]] == prompts
  assert out["new_tokens"] == sum(len(s["ids"]) for s in out["samples"])
  assert out["decode_tokens_per_sec"] > 0

  # Independent reference: full forward passes over the growing prefix, argmax each time.
  config = from_saved(json.loads((gpt_workdir / "config.json").read_text()))
  tok = tokenizer_lib.load_tokenizer(config, corpora.prepare_corpus(config))
  mesh = parallel.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  params, _, _ = weights.workdir_params(gpt_workdir, mesh)
  model = build_model(config, heads=("lm",))
  forward = jax.jit(lambda p, ids: model.apply({"params": p}, {"inputs": ids})["lm"])
  for sample in out["samples"]:
    ids = [2] + tok.encode(sample["prompt"])
    new = []
    while len(new) < 12:
      nxt = int(np.argmax(forward(params, np.asarray([ids + new]))[0, -1]))
      if nxt == 3:   # </s>
        break
      new.append(nxt)
    assert sample["ids"] == new
    assert sample["text"] == tok.decode(new)


# What llm.generate refuses, in-process (the entry point passes its flags on as a Request, and
# cli.run makes any ValueError or OSError one line: test_cli).
@pytest.mark.parametrize("request_fields,message", [
    ({"top_p": 0.0}, r"--top_p=0.0 must be in \(0, 1\]"),
    ({"num_beams": 2, "temperature": 0.7}, "beam search, which does not sample"),
    ({"max_new_tokens": 200}, "longer than the model's context, model.max_len=32"),
])
def test_bad_generate_requests_are_named(gpt_workdir, request_fields, message):
  config = tiny_config(**{"model.max_len": 32})
  with pytest.raises(ValueError, match=message):
    generate_text(config, gpt_workdir, Request(**request_fields))


def test_a_bad_flag_is_one_line_from_the_cli(cli, tmp_path):
  """llm.generate passes its flags on as a Request: a bad one is refused before anything loads,
  in one line naming the flag."""
  proc = cli("generate", "configs/gpt_tiny.py", tmp_path, "--top_p=0", devices=1)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert proc.returncode == 1 and errors == [
      "error: --top_p=0.0 must be in (0, 1]"] and "Traceback" not in proc.stderr, proc.stderr


def test_generate_without_checkpoint_or_init_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"no checkpoint in .* and no config.init"):
    generate_text(tiny_config(), tmp_path, Request(prompts=("The",)))


def test_generate_needs_a_decoder(tmp_path):
  with pytest.raises(ValueError, match="needs a decoder or an encoder-decoder"):
    generate_text(tiny_config("bert_tiny"), tmp_path, Request(prompts=("The",)))


def test_another_tokenizer_than_the_checkpoints_is_refused(gpt_workdir, tmp_path):
  """The same pieces with one score changed tokenize differently: generate and evaluate refuse
  them (the checkpoint records its tokenizer's SHA-256) and write nothing."""
  from sentencepiece import sentencepiece_model_pb2
  # A copy: evaluation checks that it can write into the workdir, which others are copying.
  gpt_workdir = shutil.copytree(gpt_workdir, tmp_path / "run")
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString((gpt_workdir / "tokenizer.model").read_bytes())
  proto.pieces[100].score -= 1.0
  other = tmp_path / "other.model"
  other.write_bytes(proto.SerializeToString())
  config = tiny_config(**{"tokenizer.path": str(other)})
  for run in (lambda: generate_text(config, gpt_workdir, Request(prompts=("The",))),
              lambda: evaluate_checkpoint(config, gpt_workdir)):
    with pytest.raises(ValueError) as e:
      run()
    assert "was trained with the tokenizer" in str(e.value) and f"not {other}" in str(e.value)
    assert f"use --config.tokenizer.path={gpt_workdir}/tokenizer.model" in str(e.value)
    assert "\n" not in str(e.value)
  assert not (gpt_workdir / "evaluate.json").exists()
