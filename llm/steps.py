"""The jitted steps a run executes: training (with gradient accumulation and the non-finite
guard) and evaluation, plus the one way a host batch becomes sharded device arrays."""
import jax
import jax.numpy as jnp
import optax

from llm import lora, optim, parallel


def make_train_step(model, task, optimizer, schedule, config):
  accum_steps = config.optimizer.grad_accum_steps

  def micro_loss(params, batch, rng, norms, poison):
    outputs = model.apply({"params": lora.merge(params, config.lora)}, batch, train=True,
                          rngs={"dropout": rng})
    loss, sums = task.loss_fn(outputs, batch, norms)
    return loss * poison, sums

  grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

  def train_step(state, batch):
    rng = jax.random.fold_in(state["rng"], state["step"])
    norms = task.normalizers(batch)   # whole-batch denominators: accumulation stays exact
    poison = 1.0
    if config.nan_at_step:   # testing the divergence guard
      poison = jnp.where(state["step"] + 1 == config.nan_at_step, jnp.nan, 1.0)
    grads_of = lambda params, mb, r: grad_fn(params, mb, r, norms, poison)
    if accum_steps == 1:
      (loss, sums), grads = grads_of(state["params"], batch, rng)
    else:
      # Row r goes to micro-batch r % accum_steps: each device keeps its own rows, no resharding.
      micro = jax.tree.map(
          lambda x: jnp.swapaxes(x.reshape((-1, accum_steps) + x.shape[1:]), 0, 1), batch)
      def add_micro(carry, xs):
        i, mb = xs
        out = grads_of(state["params"], mb, jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, out), None
      first = jax.tree.map(lambda x: x[0], micro)
      zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grads_of, state["params"], first, rng))
      ((loss, sums), grads), _ = jax.lax.scan(add_micro, zeros, (jnp.arange(accum_steps), micro))
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    # The norm of trainable gradients only: frozen ones are then unused and XLA drops them.
    trainable = optim.trainable_mask(grads, config)
    grad_norm = optax.tree.norm(jax.tree.map(lambda g, t: g if t else jnp.zeros(()), grads,
                                             trainable))
    # A non-finite step is not applied (the step count still moves on, past its batch), so the
    # state stays finite whatever the loop then decides (see config.on_nonfinite).
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep_finite = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = dict(state, step=state["step"] + 1,
                     opt_state=keep_finite(opt_state, state["opt_state"]),
                     params=keep_finite(optax.apply_updates(state["params"], updates),
                                        state["params"]))
    sums = jax.tree.map(lambda x: jnp.where(finite, x, jnp.zeros_like(x)), sums)
    stats = {"grad_norm": grad_norm, "learning_rate": schedule(state["step"]), "finite": finite,
             "tokens": jnp.sum(batch["segment_ids"] > 0)}
    return new_state, stats, sums

  return train_step


def jit_train_step(model, task, optimizer, schedule, config, mesh, shardings):
  """The step jitted for `mesh`: the state laid out as `shardings` and donated, the batch as
  put_batch built it (in_shardings None), traced with the config's axis rules in scope so that
  the models' activation constraints bind."""
  step = make_train_step(model, task, optimizer, schedule, config)
  return jax.jit(parallel.scoped(step, mesh, parallel.axis_rules(config)),
                 in_shardings=(shardings, None), out_shardings=(shardings, None, None),
                 donate_argnums=(0,))


def jit_eval_step(model, task, config, mesh, param_shardings):
  """make_eval_step jitted like jit_train_step; metric sums and predictions come back
  replicated, so that every process can read them."""
  step = parallel.scoped(make_eval_step(model, task, config), mesh, parallel.axis_rules(config))
  return jax.jit(step, in_shardings=(param_shardings, None),
                 out_shardings=parallel.replicated(mesh))


def make_eval_step(model, task, config):
  """(params, batch) -> (metric sums, predictions or None)."""
  def eval_step(params, batch):
    outputs = model.apply({"params": lora.merge(params, config.lora)}, batch, train=False)
    sums = task.loss_fn(outputs, batch, task.normalizers(batch))[1]
    predicted = task.predict(outputs, batch) if task.predict else None
    return sums, predicted
  return eval_step


def put_batch(batch, mesh, rules):
  """Global numpy batch (every process holds at least the rows its devices hold) -> jax.Arrays
  sharded over the batch axes: each device gets the rows its shard holds, however the mesh
  spreads over processes."""
  return {k: jax.make_array_from_callback(v.shape, parallel.batch_sharding(mesh, rules, v.ndim),
                                          lambda index, v=v: v[index])
          for k, v in batch.items()}
