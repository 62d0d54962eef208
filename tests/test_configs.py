"""Every experiment config builds, shards over data x fsdp x tensor, and has its paper's size."""
import pathlib

import jax
import jax.numpy as jnp
import pytest

from llm import models, optim, parallel, state, tasks
from llm.base_config import parse_arg

from helpers import load_config

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
DOCUMENTED_ARGS = {  # what each config's docstring offers; other files run with their default
    "gpt_tiny.py": [f"size={s}" for s in ("tiny", "small", "medium", "large")],
    "bert_tiny.py": [f"size={s},variant={v}" for s in ("tiny", "base", "large")
                     for v in ("bert", "roberta")],
    "finetune_topic.py": [None, "init=scratch,tuning=prompt"],
    "recipe.py": [f"family={f}" for f in ("bert", "gpt", "t5")],
    "summarize.py": [f"model={m}" for m in ("t5", "gpt")],
    "translate.py": [f"direction={d}" for d in ("en-es", "es-en")],
    "headline.py": [None],
    "t5_tiny.py": [f"size={s},variant={v}" for s in ("tiny", "small", "base", "large")
                   for v in ("t5", "transformer")],
}
PAPER_PARAMS = {  # published sizes (GPT-2 medium is 345M in the paper, 355M as released)
    ("gpt_tiny.py", "size=small"): 124e6, ("gpt_tiny.py", "size=medium"): 355e6,
    ("gpt_tiny.py", "size=large"): 774e6,
    ("bert_tiny.py", "size=base,variant=bert"): 110e6,
    ("bert_tiny.py", "size=large,variant=bert"): 340e6,
    # T5.1.1 as released (google/t5-v1_1-*): 77.0M, 247.6M, 783.2M
    ("t5_tiny.py", "size=small,variant=t5"): 77.0e6, ("t5_tiny.py", "size=base,variant=t5"): 247.6e6,
    ("t5_tiny.py", "size=large,variant=t5"): 783.2e6,
}
MESH_3D = dict(data=2, fsdp=2, tensor=2)


def abstract_state(config, mesh_sizes):
  config.mesh = mesh_sizes
  mesh = parallel.make_mesh(config.mesh)
  assert dict(mesh.shape) == mesh_sizes
  optimizer, _ = optim.make_optimizer(config)
  return state.state_shardings(models.build_model(config), optimizer, config, mesh)


def expected_params(config):
  """Parameter count written out from the config's shapes."""
  m, vocab = config.model, config.vocab_size + config.extra_ids
  heads_used = tasks.get_task(config.objective).heads(config)
  d, heads = m.embed_dim, m.num_heads
  kv_heads, head_dim = m.num_kv_heads or heads, m.head_dim or d // heads
  bias = int(m.use_bias)
  norm = (2 if m.norm_kind == "layernorm" else 1) * d
  attention = d * (heads + 2 * kv_heads) * head_dim + heads * head_dim * d
  attention += bias * ((heads + 2 * kv_heads) * head_dim + d)
  gated = m.mlp in ("swiglu", "geglu")
  mlp = d * m.mlp_dim * (2 if gated else 1) + m.mlp_dim * d
  mlp += bias * (m.mlp_dim * (2 if gated else 1) + d)
  def stack(layers, cross):
    count = layers * ((2 if cross else 1) * (attention + norm) + mlp + norm)
    count += norm if m.norm == "pre" else 0          # final norm
    count += norm if m.embed_norm else 0
    count += m.max_len * d if m.position == "learned" else 0
    count += m.relative_buckets * heads if m.position == "relative" else 0
    return count
  if m.family == "encoder_decoder":
    count = stack(m.num_layers, False) + stack(m.num_decoder_layers or m.num_layers, True)
  else:
    count = stack(m.num_layers, False)
  count += vocab * d + m.type_vocab_size * d
  count += vocab * d if "lm" in heads_used and not m.tie_embeddings else 0
  count += (d + 1) * d + 2 * d + vocab if "mlm" in heads_used else 0   # transform, norm, bias
  count += (d + 1) * d if {"nsp", "classify"} & set(heads_used) else 0  # pooler
  count += (d + 1) * 2 if "nsp" in heads_used else 0                     # NSP classifier
  count += (d + 1) * m.num_classes if {"classify", "tag"} & set(heads_used) else 0
  count += (d + 1) * 2 if "span" in heads_used else 0                    # start/end logits
  count += m.prompt_length * d                                             # soft prompt
  return count


CASES = [(path.name, arg) for path in sorted(CONFIGS.glob("*.py"))
         for arg in DOCUMENTED_ARGS.get(path.name, [None])]


@pytest.mark.parametrize("name,arg", CASES, ids=[f"{n[:-3]}:{a}" for n, a in CASES])
def test_config_builds_shards_and_has_expected_size(name, arg):
  config = load_config(name, arg)
  heads = tasks.get_task(config.objective).heads(config)
  if {"classify", "tag"} & set(heads) and not config.model.num_classes:
    config.model.num_classes = 5   # set from the corpus at run time
  abstract, shardings = abstract_state(config, MESH_3D)

  count = state.count_params(abstract["params"])
  assert count == expected_params(config)
  if (name, arg) in PAPER_PARAMS:
    assert abs(count / PAPER_PARAMS[name, arg] - 1) < 0.02, count

  stack = "encoder" if config.model.family == "encoder" else "decoder"
  params = shardings["params"][stack]
  assert tuple(params["layer_0"]["mlp"]["wi"]["kernel"].spec) == ("fsdp", "tensor")
  assert tuple(params["layer_0"]["mlp"]["wo"]["kernel"].spec) == ("tensor", "fsdp")
  assert tuple(params["layer_0"]["attention"]["query"]["kernel"].spec) == ("fsdp", "tensor", None)
  # The embedding and its two Adam moments (none when it is frozen) all shard the same way.
  embedding = [s.spec for path, s in jax.tree_util.tree_leaves_with_path(shardings)
               if jax.tree_util.keystr(path).endswith("['token_embed']['embedding']")]
  copies = 1 if config.optimizer.train_only else 3
  assert [tuple(spec) for spec in embedding] == [("tensor", "fsdp")] * copies
  leaf = abstract["params"][stack]["layer_0"]["mlp"]["wi"]["kernel"]
  assert leaf.sharding == params["layer_0"]["mlp"]["wi"]["kernel"]
  assert leaf.dtype == jnp.float32


def test_scanned_layers_shard_with_a_replicated_layers_axis():
  config = load_config("gpt_tiny.py", "size=small")
  config.model.scan_layers = True
  abstract, shardings = abstract_state(config, MESH_3D)
  assert state.count_params(abstract["params"]) == expected_params(config)
  layers = shardings["params"]["decoder"]["layers"]
  assert tuple(layers["mlp"]["wi"]["kernel"].spec) == (None, "fsdp", "tensor")
  assert abstract["params"]["decoder"]["layers"]["mlp"]["wi"]["kernel"].shape == (12, 768, 3072)


def test_unshardable_dimension_is_named():
  """GPT-2's unpadded 50257-token vocabulary cannot split over tensor=2: the error says where."""
  config = load_config("gpt_tiny.py", "size=small")
  config.vocab_size = 50257
  with pytest.raises(ValueError, match=r"\['token_embed'\]\['embedding'\].*50257 cannot be split 2"):
    abstract_state(config, MESH_3D)


# --- config args -------------------------------------------------------------------------------

def test_parse_arg():
  assert parse_arg(None, size="tiny", variant="bert") == {"size": "tiny", "variant": "bert"}
  assert parse_arg("variant=roberta", size="tiny", variant="bert") == {
      "size": "tiny", "variant": "roberta"}
  with pytest.raises(ValueError, match="'colour'"):
    parse_arg("size=base,colour=red", size="tiny")


@pytest.mark.parametrize("name,arg,bad", [
    ("gpt_tiny.py", "size=huge", "'huge'"), ("gpt_tiny.py", "colour=red", "'colour'"),
    ("bert_tiny.py", "size=xl", "'xl'"), ("bert_tiny.py", "size=base,variant=albert", "'albert'"),
])
def test_bad_config_args_name_the_bad_value(name, arg, bad):
  with pytest.raises(ValueError, match=bad):
    load_config(name, arg)


# --- mesh --------------------------------------------------------------------------------------

@pytest.mark.parametrize("given,resolved", [
    ((-1, 1, 1), (8, 1, 1)), ((-1, 2, 2), (2, 2, 2)), ((2, -1, 1), (2, 4, 1)),
    ((1, 2, -1), (1, 2, 4)), ((2, 2, 2), (2, 2, 2)),
])
def test_mesh_shape_resolves_minus_one(given, resolved):
  sizes = parallel.mesh_shape(dict(zip(parallel.MESH_AXES, given)), 8)
  assert sizes == dict(zip(parallel.MESH_AXES, resolved))


@pytest.mark.parametrize("given,message", [
    ((2, 2, 1), r"= 4 \(\{'data': 2, 'fsdp': 2, 'tensor': 1\}\) must equal the 8"),
    ((4, 2, 2), r"= 16 .* must equal the 8"),
    ((-1, 3, 1), r"needs a multiple of 3 devices, but there are 8"),
    ((-1, -1, 2), r"at most one axis may be -1"),
    ((8, 0, 1), r"positive or -1, got .*'fsdp': 0"),
])
def test_mesh_shape_rejects_bad_sizes(given, message):
  with pytest.raises(ValueError, match=message):
    parallel.mesh_shape(dict(zip(parallel.MESH_AXES, given)), 8)


def test_fine_tuning_intervals_follow_an_overridden_total_steps():
  """Warmup (10%), evaluation and checkpoint intervals (half) are derived after overrides (as
  --config.total_steps=40 sets it), as a user running a shorter fine-tune expects; one set
  directly wins."""
  config = load_config("finetune_topic", "init=scratch")
  assert (config.optimizer.warmup_steps, config.eval_every) == (20, 100)
  config.total_steps = 40
  config.eval_every = 7
  assert (config.optimizer.warmup_steps, config.eval_every, config.checkpoint_every) == (4, 7, 20)
  assert '"warmup_steps": 4' in config.to_json()
