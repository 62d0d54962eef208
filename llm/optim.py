"""Optimizer from config: AdamW, warmup + cosine/linear decay, clipping, weight-decay mask."""
import re

import jax
import optax

# The learning rate's decay after warmup (optimizer.decay).
DECAYS = ("cosine", "linear", "constant")


def learning_rate_schedule(cfg, total_steps):
  """Linear warmup to cfg.learning_rate, then `cfg.decay` down to learning_rate * end_lr_ratio."""
  peak, warmup = cfg.learning_rate, cfg.warmup_steps
  end = peak * cfg.end_lr_ratio
  decay_steps = max(total_steps - warmup, 1)
  if cfg.decay == "cosine":
    decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.end_lr_ratio)
  elif cfg.decay == "linear":
    decay = optax.linear_schedule(peak, end, decay_steps)
  elif cfg.decay == "constant":
    decay = optax.constant_schedule(peak)
  else:
    raise ValueError(f"optimizer.decay={cfg.decay!r}: expected one of {list(DECAYS)}")
  if not warmup:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def path_name(path):
  """'layer_0/mlp/wi/kernel' for a params pytree path (box wrappers skipped)."""
  return "/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def decay_mask(params, no_decay_regex):
  """True for parameters that get weight decay: all except those whose path matches the regex."""
  pattern = re.compile(no_decay_regex)
  return jax.tree_util.tree_map_with_path(lambda p, _: not pattern.search(path_name(p)), params)


def trainable_mask(params, config):
  """True for parameters the optimizer updates. With LoRA on, only the adapters and the
  parameters matching lora.train_also (the new task head) train; optimizer.freeze (a regex)
  freezes more, and optimizer.train_only (a regex) trains only what it matches (e.g. a soft
  prompt and the task head). Frozen parameters get no optimizer state at all."""
  freeze = re.compile(config.optimizer.freeze) if config.optimizer.freeze else None
  only = re.compile(config.optimizer.train_only) if config.optimizer.get("train_only") else None
  lora_on = config.lora.rank > 0
  also = re.compile(config.lora.train_also) if lora_on and config.lora.train_also else None
  def trainable(key_path, _):
    path = path_name(key_path)
    if (freeze and freeze.search(path)) or (only and not only.search(path)):
      return False
    if lora_on:
      return path.startswith("lora/") or bool(also and also.search(path))
    return True
  mask = jax.tree_util.tree_map_with_path(trainable, params)
  if not any(jax.tree.leaves(mask)):   # a run that trains nothing would look like one that does
    settings = [f"{key}={value!r}" for key, value in (
        ("optimizer.freeze", config.optimizer.freeze),
        ("optimizer.train_only", config.optimizer.get("train_only")),
        ("lora.train_also", config.lora.train_also if lora_on else "")) if value]
    raise ValueError(f"no parameter would train with {' and '.join(settings)}; parameter paths "
                     f"look like 'decoder/layer_0/mlp/wi/kernel'")
  return mask


def make_optimizer(config):
  """Returns (optax transformation, learning-rate schedule)."""
  cfg = config.optimizer
  schedule = learning_rate_schedule(cfg, config.total_steps)
  tx = optax.chain(
      optax.clip_by_global_norm(cfg.clip_norm) if cfg.clip_norm else optax.identity(),
      optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                  mask=lambda params: decay_mask(params, cfg.no_decay)))
  if cfg.freeze or cfg.get("train_only") or config.lora.rank > 0:
    labels = lambda params: jax.tree.map(lambda t: "train" if t else "frozen",
                                         trainable_mask(params, config))
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  return tx, schedule
