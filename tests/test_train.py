"""The training loop: sharding invariance, exact resume, restore onto another mesh, accumulation."""

import shutil

import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from llm import optim, parallel, state as state_lib
from llm.models import build_model
from llm.planning import lower_train_step
from llm.training import train_and_evaluate

from helpers import losses, tiny_config

MESHES = {"data8": dict(data=8, fsdp=1, tensor=1), "fsdp8": dict(data=1, fsdp=8, tensor=1),
          "2x2x2": dict(data=2, fsdp=2, tensor=2)}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """6 steps (dropout on) on the default mesh, data=8, uninterrupted."""
  workdir = tmp_path_factory.mktemp("straight") / "run"
  train_and_evaluate(tiny_config(total_steps=6), workdir)
  return workdir


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
  """The same run stopped after step 3 (as a preempted job is), on the same mesh."""
  workdir = tmp_path_factory.mktemp("stopped") / "run"
  train_and_evaluate(tiny_config(total_steps=6, stop_at_step=3), workdir)
  return workdir


def test_meshes_give_the_same_losses(tmp_path, straight):
  """6 steps (dropout on) on three meshes: same losses up to float reassociation (rtol 1e-5)."""
  runs = {"data8": losses(straight)}
  for name in ("fsdp8", "2x2x2"):
    train_and_evaluate(tiny_config(total_steps=6, mesh=MESHES[name]), tmp_path / name)
    runs[name] = losses(tmp_path / name)
  assert list(runs["data8"]) == [1, 2, 3, 4, 5, 6]
  for name in ("fsdp8", "2x2x2"):
    np.testing.assert_allclose(list(runs[name].values()), list(runs["data8"].values()), rtol=1e-5)
  assert runs["data8"][6] < runs["data8"][1]


def test_parameters_are_sharded_as_the_rules_say():
  config = tiny_config(mesh=MESHES["2x2x2"])
  mesh = parallel.make_mesh(config.mesh)
  model, (optimizer, _) = build_model(config), optim.make_optimizer(config)
  _, shardings = state_lib.state_shardings(model, optimizer, config, mesh)
  state = state_lib.init_state(model, optimizer, config, shardings)
  params = state["params"]["decoder"]
  wi = params["layer_0"]["mlp"]["wi"]["kernel"]                  # (embed, mlp)
  assert wi.sharding.spec == P("fsdp", "tensor")
  assert wi.addressable_shards[0].data.shape == (64 // 2, 128 // 2)
  query = params["layer_0"]["attention"]["query"]["kernel"]    # (embed, heads, kv)
  assert query.sharding.spec == P("fsdp", "tensor", None)
  embed = state["params"]["token_embed"]["embedding"]            # (vocab, embed)
  assert embed.sharding.spec == P("tensor", "fsdp")
  # Adam's moments are sharded exactly like the parameters they belong to.
  mu = state["opt_state"][1][0].mu["decoder"]["layer_0"]["mlp"]["wi"]["kernel"]
  assert mu.sharding == wi.sharding


def test_activation_constraints_reach_the_traced_step():
  """The models' logical activation constraints bind in the step train.py runs (Flax drops them
  unless the rules and a mesh are in scope while tracing): on a 2x2x2 mesh the MLP's hidden
  activations, (batch 16, length 32, mlp 128), are pinned to batch over data+fsdp and mlp over
  tensor, and the queries, (16, 32, heads 4, kv 16), to heads over tensor."""
  text = lower_train_step(tiny_config(mesh=MESHES["2x2x2"]))[0].as_text()
  constraints = [line for line in text.splitlines() if "sharding_constraint" in line]
  mlp = [c for c in constraints if '[{"data", "fsdp"}, {}, {"tensor"}]' in c
         and "tensor<16x32x128xf32>" in c]
  queries = [c for c in constraints if '[{"data", "fsdp"}, {}, {"tensor"}, {}]' in c
             and "tensor<16x32x4x16xf32>" in c]
  assert len(mlp) >= 2 and len(queries) >= 2, constraints   # one per layer at least


def test_stop_and_resume_matches_uninterrupted_run(tmp_path, straight, stopped):
  """Stopping after step 3 and rerunning gives bitwise the same losses (same data, same rng)."""
  assert list(losses(stopped)) == [1, 2, 3]
  shutil.copytree(stopped, tmp_path / "resumed")
  train_and_evaluate(tiny_config(total_steps=6), tmp_path / "resumed")
  assert losses(tmp_path / "resumed") == losses(straight)


def test_resume_onto_another_mesh(tmp_path, straight, stopped):
  """Stopped on data=8, resumed on fsdp=4 x tensor=2."""
  shutil.copytree(stopped, tmp_path / "moved")
  train_and_evaluate(tiny_config(total_steps=6, mesh=dict(data=1, fsdp=4, tensor=2)),
                     tmp_path / "moved")
  expected, got = losses(straight), losses(tmp_path / "moved")
  assert list(got) == list(expected)
  np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-5)


def test_resume_converts_between_layer_layouts_when_asked(tmp_path):
  """Stopped with unscanned layers, resumed with scanned ones (params and Adam moments restacked):
  the same losses as an uninterrupted unscanned run (dropout off: the two layouts draw their
  dropout masks differently)."""
  common = dict(total_steps=4, eval_batches=1, **{"model.dropout_rate": 0.0})
  train_and_evaluate(tiny_config(**common), tmp_path / "straight")
  train_and_evaluate(tiny_config(**common, stop_at_step=2), tmp_path / "moved")
  with pytest.raises(ValueError, match=r"stores its layers with model.scan_layers=False; set "
                     r"--config.model.scan_layers=False, or add --config.convert_layout=True"):
    train_and_evaluate(tiny_config(**common, **{"model.scan_layers": True}), tmp_path / "moved")
  train_and_evaluate(tiny_config(**common, convert_layout=True, **{"model.scan_layers": True}),
                     tmp_path / "moved")
  expected, got = losses(tmp_path / "straight"), losses(tmp_path / "moved")
  assert list(got) == list(expected)
  np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-5)


@pytest.mark.parametrize("name,arg", [("gpt_tiny", None), ("bert_tiny", "variant=bert")])
def test_gradient_accumulation_is_exact(tmp_path, name, arg):
  """2 micro-batches of 8 give the same update as one batch of 16 (dropout off)."""
  common = dict(total_steps=3, **{"model.dropout_rate": 0.0, "model.attention_dropout_rate": 0.0})
  train_and_evaluate(tiny_config(name, arg, **common), tmp_path / "full")
  train_and_evaluate(tiny_config(name, arg, **common, **{"optimizer.grad_accum_steps": 2}),
                     tmp_path / "accum")
  np.testing.assert_allclose(list(losses(tmp_path / "accum").values()),
                             list(losses(tmp_path / "full").values()), rtol=1e-5)


def test_bfloat16_compute_trains(tmp_path):
  result = train_and_evaluate(tiny_config(total_steps=3, **{"model.dtype": "bfloat16"}),
                              tmp_path / "bf16")
  assert np.isfinite(result["loss"])


def test_encoder_decoder_meshes_and_exact_resume(tmp_path):
  """T5 span corruption: same losses on data=8 and a 2x2x2 mesh, and a stopped-then-resumed run
  bitwise equal to an uninterrupted one (packed pairs restore their position exactly)."""
  common = dict(total_steps=4, eval_batches=1, **{"model.num_layers": 1,
                                                   "model.num_decoder_layers": 1,
                                                   "model.head_dim": 16})
  t5 = lambda **kw: tiny_config("t5_tiny", **common, **kw)
  train_and_evaluate(t5(), tmp_path / "straight")
  train_and_evaluate(t5(stop_at_step=2), tmp_path / "resumed")
  train_and_evaluate(t5(), tmp_path / "resumed")
  assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")
  train_and_evaluate(t5(mesh=MESHES["2x2x2"]), tmp_path / "3d")
  np.testing.assert_allclose(list(losses(tmp_path / "3d").values()),
                             list(losses(tmp_path / "straight").values()), rtol=1e-5)


def test_a_long_interval_adds_up_every_step(monkeypatch):
  """An interval longer than 2 x HELD steps (log_every=0 logs only the last step) holds at most
  that many steps' figures on the device; the rest are added up on the host in batches, and
  the logged loss is still that of every step."""
  import types
  import jax.numpy as jnp
  from llm import training
  monkeypatch.setattr(training._Interval, "HELD", 2)
  interval, step_losses = training._Interval(), np.arange(1.0, 12.0)
  for loss in step_losses:
    interval.add({"tokens": jnp.int32(10)}, {"loss_sum": jnp.float32(loss),
                                             "count": jnp.float32(1.0)})
    assert len(interval.sums) < 4
  task = types.SimpleNamespace(summarize=lambda s: {"loss": s["loss_sum"] / s["count"]})
  bar = types.SimpleNamespace(set_postfix=lambda **_: None)
  record = interval.record(11, {"grad_norm": 1.0, "learning_rate": 0.1}, [], task, bar)
  assert record["train/loss"] == pytest.approx(step_losses.mean())
  assert interval.steps == 0 and not interval.sums and interval.totals is None
