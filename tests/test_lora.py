"""Parameter-efficient fine-tuning: LoRA merge arithmetic, soft prompts, freezing; train steps
that move only what should move."""
import jax
import numpy as np
import pytest

from llm import config_checks, convert, lora, optim, parallel, state as state_lib
from llm.models import build_model
from llm.tasks.classification import TASK as classification
from llm.steps import make_train_step

from helpers import load_config


def tiny_classifier(**overrides):
  config = load_config("finetune_topic", "init=scratch", seq_len=16, batch_size=8,
                       vocab_size=100, total_steps=10, **{"model.num_classes": 3,
                       "model.num_layers": 2, "model.embed_dim": 32, "model.num_heads": 4,
                       "model.mlp_dim": 64, "model.max_len": 16,
                       "optimizer.warmup_steps": 0, "optimizer.learning_rate": 1e-2,
                       **overrides})
  config.mesh = dict(data=8, fsdp=1, tensor=1)
  return config


def test_merge_adds_scaled_low_rank_update():
  cfg = load_config("finetune_topic", **{"lora.rank": 2, "lora.alpha": 4.0}).lora
  w_q, w_out = np.ones((6, 3, 2)), np.ones((3, 2, 6))       # (embed, heads, kv), (heads, kv, embed)
  params = {"layer_0": {"attention": {"query": {"kernel": w_q}, "out": {"kernel": w_out}}}}
  a_q, b_q = np.arange(12.).reshape(6, 2), np.arange(12.).reshape(2, 6) / 10
  a_o, b_o = np.arange(12.).reshape(6, 2) / 7, np.arange(12.).reshape(2, 6)
  params["lora"] = {"layer_0": {"attention": {"query": {"kernel": {"a": a_q, "b": b_q}},
                                              "out": {"kernel": {"a": a_o, "b": b_o}}}}}
  merged = lora.merge(params, cfg)
  assert "lora" not in merged
  np.testing.assert_allclose(merged["layer_0"]["attention"]["query"]["kernel"],
                             w_q + 2.0 * (a_q @ b_q).reshape(6, 3, 2))
  # The output kernel's input is its first two axes (heads * kv = 6).
  np.testing.assert_allclose(merged["layer_0"]["attention"]["out"]["kernel"],
                             w_out + 2.0 * (a_o @ b_o).reshape(3, 2, 6))
  # Scanned layers: the same adapters stacked along a leading layers axis merge layer by layer.
  scanned = convert.to_layout({"layer_0": params["layer_0"], "layer_1": params["layer_0"],
                               "lora": {"layer_0": params["lora"]["layer_0"],
                                        "layer_1": params["lora"]["layer_0"]}}, scan=True)
  merged_scanned = lora.merge(scanned, cfg)["layers"]["attention"]
  for i in range(2):
    np.testing.assert_allclose(merged_scanned["query"]["kernel"][i],
                               merged["layer_0"]["attention"]["query"]["kernel"])
    np.testing.assert_allclose(merged_scanned["out"]["kernel"][i],
                               merged["layer_0"]["attention"]["out"]["kernel"])


def build(config):
  mesh = parallel.make_mesh(config.mesh)
  model, (optimizer, schedule) = build_model(config), optim.make_optimizer(config)
  _, shardings = state_lib.state_shardings(model, optimizer, config, mesh)
  state = state_lib.init_state(model, optimizer, config, shardings)
  return model, optimizer, schedule, state


def batch():
  rng = np.random.default_rng(0)
  inputs = rng.integers(7, 100, (8, 16)).astype(np.int32)
  return {"inputs": inputs, "segment_ids": np.ones_like(inputs),
          "positions": np.broadcast_to(np.arange(16, dtype=np.int32), (8, 16)),
          "token_types": np.zeros_like(inputs), "labels": rng.integers(0, 3, 8).astype(np.int32)}


def run_steps(config, steps=3):
  model, optimizer, schedule, state = build(config)
  before = jax.tree.map(np.asarray, state["params"])
  step = jax.jit(make_train_step(model, classification, optimizer, schedule, config))
  for _ in range(steps):
    state, _, _ = step(state, batch())
  return before, jax.tree.map(np.asarray, state["params"]), state


def changed(before, after):
  return {optim.path_name(p) for (p, a), b in zip(jax.tree_util.tree_leaves_with_path(before),
                                                jax.tree.leaves(after)) if not np.array_equal(a, b)}


def test_fresh_adapters_leave_the_model_unchanged():
  config = tiny_classifier(**{"lora.rank": 4})
  model, _, _, state = build(config)
  with_lora = model.apply({"params": lora.merge(state["params"], config.lora)}, batch())
  base = {k: v for k, v in state["params"].items() if k != "lora"}
  without = model.apply({"params": base}, batch())
  np.testing.assert_array_equal(with_lora["classify"], without["classify"])


def test_lora_trains_adapters_and_head_only():
  config = tiny_classifier(**{"lora.rank": 4})
  before, after, state = run_steps(config)
  moved = changed(before, after)
  assert moved, "nothing trained"
  assert all(p.startswith(("lora/", "classify_head/", "pooler/")) for p in moved), moved
  assert any(p.startswith("lora/encoder/layer_1/attention/value") for p in moved)
  # Frozen weights carry no Adam moments: optimizer state is far smaller than the model.
  opt_floats = sum(x.size for x in jax.tree.leaves(state["opt_state"]))
  trainable = sum(np.asarray(v).size for k, v in state["params"].items()
                  if k in ("lora", "classify_head", "pooler") for v in jax.tree.leaves(v))
  assert opt_floats <= 2 * trainable + 16


def test_lora_on_scanned_layers_trains_adapters_and_head_only():
  config = tiny_classifier(**{"lora.rank": 4, "model.scan_layers": True})
  before, after, state = run_steps(config)
  moved = changed(before, after)
  assert all(p.startswith(("lora/", "classify_head/", "pooler/")) for p in moved), moved
  assert state["params"]["lora"]["encoder"]["layers"]["attention"]["value"]["kernel"]["a"].shape \
      == (2, 32, 4)


def test_freeze_regex_without_lora():
  before, after, _ = run_steps(tiny_classifier(
      **{"optimizer.freeze": r"^(encoder/layer_0|token_embed)/"}))
  moved = changed(before, after)
  assert not any(p.startswith(("encoder/layer_0/", "token_embed/")) for p in moved)
  assert any(p.startswith("encoder/layer_1/") for p in moved)


def test_bad_lora_targets_are_named():
  with pytest.raises(ValueError, match="lora.targets='nothing_here'"):
    build(tiny_classifier(**{"lora.rank": 2, "lora.targets": "nothing_here"}))


def test_soft_prompt_acts_like_inserted_tokens():
  """Prompt vectors equal to some tokens' embeddings give the states of a plain model that reads
  those tokens after [CLS]; the prompt's own positions are dropped from the outputs."""
  config = tiny_classifier(**{"model.prompt_length": 3, "model.max_len": 20,
                              "model.dropout_rate": 0.0})
  model, _, _, state = build(config)
  params = jax.tree.map(np.asarray, state["params"])
  prompt_ids = np.array([11, 12, 13])
  params["encoder"]["prompt"] = params["token_embed"]["embedding"][prompt_ids]
  b = batch()
  b["segment_ids"][1, 10:] = 0            # a padded row too
  b["token_types"][:, 8:] = 1
  with_prompt = model.apply({"params": params}, b)["hidden"]
  assert with_prompt.shape == (8, 16, 32)

  plain_config = tiny_classifier(**{"model.max_len": 20, "model.dropout_rate": 0.0})
  plain = build_model(plain_config)
  plain_params = dict(params, encoder={k: v for k, v in params["encoder"].items()
                                       if k != "prompt"})
  insert = lambda a, mid: np.concatenate([a[:, :1], mid, a[:, 1:]], axis=1)
  longer = {"inputs": insert(b["inputs"], np.broadcast_to(prompt_ids, (8, 3))),
            "segment_ids": insert(b["segment_ids"], np.repeat(b["segment_ids"][:, :1], 3, 1)),
            "positions": np.broadcast_to(np.arange(19, dtype=np.int32), (8, 19)),
            "token_types": insert(b["token_types"], np.zeros((8, 3), np.int32))}
  reference = plain.apply({"params": plain_params}, longer)["hidden"]
  reference = np.concatenate([reference[:, :1], reference[:, 4:]], axis=1)
  real = b["segment_ids"] > 0
  np.testing.assert_allclose(np.asarray(with_prompt)[real], reference[real], atol=1e-5)


def test_prompt_tuning_trains_prompt_and_head_only():
  config = tiny_classifier(**{"model.prompt_length": 4, "model.max_len": 20})
  config.optimizer.train_only = load_config("finetune_topic", "tuning=prompt").optimizer.train_only
  before, after, state = run_steps(config)
  moved = changed(before, after)
  assert "encoder/prompt" in moved and "classify_head/out/kernel" in moved
  assert all(p == "encoder/prompt" or p.startswith(("classify_head/", "pooler/"))
             for p in moved), moved
  opt_floats = sum(x.size for x in jax.tree.leaves(state["opt_state"]))
  assert opt_floats <= 2 * (4 * 32 + 32 * 3 + 3 + 32 * 32 + 32) + 16


def test_prompt_config_errors_are_named():
  config = load_config("finetune_topic", "init=scratch,tuning=prompt", seq_len=128)
  config.model.max_len = 128
  with pytest.raises(ValueError, match=r"seq_len=128 \+ model.prompt_length=20 is longer than "
                     r"model.max_len=128 \(the position table\); use seq_len <= 108"):
    config_checks.check_config(config, 8)
  with pytest.raises(ValueError, match=r"config arg tuning='soft': expected full, lora or prompt"):
    load_config("finetune_topic", "tuning=soft")
  config = load_config("finetune_topic", **{"optimizer.train_only": "(unclosed"})
  with pytest.raises(ValueError, match=r"optimizer.train_only='\(unclosed' is not a valid regex"):
    config_checks.check_config(config, 8)


def test_prompt_starts_from_vocabulary_embeddings():
  from llm import transfer
  embedding = np.arange(200 * 4, dtype=np.float32).reshape(200, 4)
  params = {"token_embed": {"embedding": jax.numpy.asarray(embedding)},
            "encoder": {"prompt": jax.numpy.zeros((5, 4))}}
  prompt = np.asarray(transfer._prompt_from_vocabulary(params, seed=0))
  ids = [int(np.flatnonzero((embedding == row).all(1))[0]) for row in prompt]
  assert len(set(ids)) == 5 and min(ids) >= 20   # distinct, common (not special) tokens
