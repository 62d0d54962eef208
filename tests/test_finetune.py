"""Fine-tuning: transfer from MiniLM and from our own pretraining run, predictions, bad inits."""
import json

import jax
import numpy as np
import pytest

from llm import config_checks, convert, optim, parallel, state as state_lib, transfer, weights
from llm.evaluation import evaluate_checkpoint
from llm.models import build_model

from helpers import config_flags, load_config


def test_minilm_topic_finetune_from_the_cli(cli, tmp_path):
  """A few steps from MiniLM already separate the 5 BBC topics; predictions match the metrics."""
  overrides = {"total_steps": 12, "seq_len": 32, "batch_size": 16,
               "optimizer.learning_rate": 4e-4, "optimizer.warmup_steps": 2, "eval_every": 12,
               "log_every": 4, "eval_batches": 4}
  proc = cli("train", "configs/finetune_topic.py", tmp_path,
             *config_flags(overrides), devices=1, optimize=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "init: loaded 103 tensors from minilm; newly initialised: classify_head" in proc.stdout
  final = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
  assert final["eval/accuracy"] > 0.6, final     # chance is ~0.23
  # llm.evaluate's function on the run's checkpoint: the predictions file.
  evaluate_checkpoint(load_config("finetune_topic", **overrides), tmp_path)
  result = json.loads((tmp_path / "evaluate.json").read_text())
  # The run evaluated on 1 device, optimised; this on 8 at level 0: a near tie may flip one.
  assert result["accuracy"] == pytest.approx(final["eval/accuracy"], abs=1.5 / 64)
  rows = [json.loads(line) for line in (tmp_path / "predictions_validation.jsonl").read_text()
          .splitlines()]
  assert len(rows) == 4 * 16 and len({r["id"] for r in rows}) == len(rows)
  assert np.mean([r["label"] == r["prediction"] for r in rows]) == pytest.approx(
      result["accuracy"])


def test_init_from_our_pretrained_bert(trained_bert):
  """Every backbone tensor of a bert_tiny run (trained with scanned layers) is loaded into an
  unscanned model; the classifier is new."""
  config = load_config("finetune_topic", f"init={trained_bert}", seq_len=32)
  config_checks.resolve_config(config, 8)
  assert config.model.embed_dim == 64 and config.model.num_layers == 2
  assert not config.model.scan_layers   # the layout is the run's own choice
  assert config.tokenizer.path == str(trained_bert / "tokenizer.model")
  assert config.model.num_classes == 5
  mesh = parallel.make_mesh(config.mesh)
  model, (optimizer, _) = build_model(config), optim.make_optimizer(config)
  _, shardings = state_lib.state_shardings(model, optimizer, config, mesh)
  fresh = state_lib.init_state(model, optimizer, config, shardings)["params"]
  loaded = transfer.load_pretrained(config, fresh, mesh)

  saved, saved_config, _ = weights.workdir_params(trained_bert, mesh)
  assert saved_config.model.scan_layers and "layers" in saved["encoder"]
  saved = convert.flatten(convert.to_layout(saved, scan=False))
  got = convert.flatten(loaded)
  for path in ("encoder/layer_1/attention/query/kernel", "token_embed/embedding",
               "pooler/dense/kernel", "encoder/embed_norm/scale"):
    np.testing.assert_array_equal(np.asarray(got[path]), np.asarray(saved[path]))
  np.testing.assert_array_equal(np.asarray(loaded["classify_head"]["out"]["kernel"]),
                                np.asarray(fresh["classify_head"]["out"]["kernel"]))
  # Loaded tensors land on this model's shardings.
  query = loaded["encoder"]["layer_1"]["attention"]["query"]["kernel"]
  assert query.sharding == (
      shardings["params"]["encoder"]["layer_1"]["attention"]["query"]["kernel"])


def test_mismatched_tensor_shape_is_named():
  target = {"layer_0": {"mlp": {"wi": {"kernel": jax.numpy.zeros((4, 8))}}}}
  source = {"layer_0": {"mlp": {"wi": {"kernel": np.zeros((4, 6))}}}}
  with pytest.raises(ValueError, match=r"layer_0/mlp/wi/kernel has shape \(4, 6\) in the source "
                                       r"but \(4, 8\)"):
    transfer._merge(target, source, "", [])


@pytest.mark.parametrize("init,expected", [
    ("/nonexistent/bert", "/nonexistent/bert"),
    ("configs", "config.json"),
])
def test_bad_init_is_one_line(init, expected):
  with pytest.raises((ValueError, FileNotFoundError)) as e:
    config_checks.resolve_config(load_config("finetune_topic", init=init), 8)
  assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_ner_from_scratch_end_to_end(cli, tmp_path):
  """The tag head through the whole loop: training, entity scores, per-word predictions."""
  overrides = {"total_steps": 3, "batch_size": 16, "seq_len": 32, "model.max_len": 32,
               "model.num_layers": 1, "model.embed_dim": 32, "model.num_heads": 2,
               "model.mlp_dim": 64, "eval_batches": 2, "log_every": 1}
  proc = cli("train", "configs/finetune_ner.py:init=scratch", tmp_path,
             *config_flags(overrides), devices=1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  final = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
  assert {"eval/span_f1", "eval/span_precision", "eval/span_recall", "eval/span_f1/person",
          "eval/token_accuracy"} <= set(final)
  # llm.evaluate's function on the run's checkpoint: the predictions file.
  result = evaluate_checkpoint(load_config("finetune_ner", "init=scratch", **overrides), tmp_path)
  # The same predictions on 8 devices as on the run's 1, up to a near tie flipping a tag.
  assert result["token_accuracy"] == pytest.approx(final["eval/token_accuracy"], abs=0.01)
  rows = [json.loads(line) for line in (tmp_path / "predictions_validation.jsonl").read_text()
          .splitlines()]
  assert len(rows) == 32 and all(len(r["tokens"]) == len(r["tags"]) == len(r["predicted"])
                                 for r in rows)


def test_bert2bert_warm_start_copies_the_encoder_into_both_stacks():
  """An encoder-decoder config with init=minilm (Rothe et al., 2020): MiniLM's shapes and
  WordPiece vocabulary in both stacks, the decoder's self-attention, MLP and embeddings the
  encoder's, its cross-attention fresh; the model decodes over MiniLM's vocabulary."""
  config = load_config("summarize", "init=minilm", seq_len=32)
  config_checks.resolve_config(config, 8)
  m = config.model
  assert (m.family, m.num_layers, m.num_decoder_layers, m.embed_dim, m.norm) == (
      "encoder_decoder", 6, 6, 384, "post")
  assert config.tokenizer.kind == "wordpiece" and config.vocab_size == 30522
  mesh = parallel.make_mesh(config.mesh)
  model = build_model(config)
  abstract = state_lib.abstract_params(model, config, mesh)
  zeros = jax.jit(lambda: jax.tree.map(lambda a: jax.numpy.zeros(a.shape, a.dtype), abstract),
                  out_shardings=jax.tree.map(lambda a: a.sharding, abstract))()
  loaded = convert.flatten(transfer.load_pretrained(config, zeros, mesh))
  for path in ("layer_5/attention/query/kernel", "layer_0/mlp/wo/kernel", "embed_norm/scale",
               "position_embed/embedding", "layer_3/mlp_norm/bias"):
    assert np.abs(np.asarray(loaded[f"encoder/{path}"])).max() > 0, path
    np.testing.assert_array_equal(np.asarray(loaded[f"decoder/{path}"]),
                                  np.asarray(loaded[f"encoder/{path}"]), err_msg=path)
  for path in ("decoder/layer_0/cross_attention/query/kernel",
               "decoder/layer_5/cross_attention_norm/scale"):   # not loaded: still zeros
    assert not np.asarray(loaded[path]).any(), path
  # Evaluating it as is would decode through zero cross-attention: refused, naming what is new.
  with pytest.raises(ValueError, match=r"has no decoder/layer_\*/cross_attention, "
                                       r"decoder/layer_\*/cross_attention_norm for this model"):
    transfer.init_params(config, model, mesh)
  tokens = np.asarray([[101, 7592, 2088, 102]], np.int32)
  logits = jax.jit(model.apply)({"params": convert.nest(loaded)},
                                {"inputs": tokens, "decoder_inputs": tokens[:, :3]})["lm"]
  assert logits.shape == (1, 3, 30522) and np.isfinite(np.asarray(logits)).all()
