"""Device mesh, logical-axis rules and shardings.

Parameters and activations are annotated with logical axis names (`embed`, `heads`, ...); the
config's `logical_axis_rules` maps them onto the mesh axes `data`, `fsdp` and `tensor`. Plain data
parallelism is simply `mesh.data=-1`.
"""
import functools
import math
import os
import socket
import time

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")


# The variables users script multi-process runs against (launch/local.sh sets them).
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def peer_timeout(environ=None):
  """Seconds a silent peer counts as alive (LLM_HEARTBEAT_TIMEOUT, default 100)."""
  return _int_env(os.environ if environ is None else environ, "LLM_HEARTBEAT_TIMEOUT", 100)


def initialize_distributed(environ=None):
  """jax.distributed.initialize() for a run that spans processes, before any device is touched.

  With JAX_COORDINATOR_ADDRESS set, JAX_NUM_PROCESSES and JAX_PROCESS_ID must be set too (JAX
  itself reads only the address); otherwise JAX detects the cluster (TPU pods, SLURM, ...).
  LLM_DISTRIBUTED_TIMEOUT (seconds, default 300) bounds the wait for the other processes, and
  LLM_HEARTBEAT_TIMEOUT (default 100) how long a silent peer counts as alive.
  CPU processes talk through gloo, so the same run works on one machine without accelerators.
  """
  env = os.environ if environ is None else environ
  timeout = _int_env(env, "LLM_DISTRIBUTED_TIMEOUT", 300)
  kwargs = dict(initialization_timeout=timeout, heartbeat_timeout_seconds=peer_timeout(env))
  address = env.get("JAX_COORDINATOR_ADDRESS")
  if address:
    missing = [k for k in DISTRIBUTED_ENV[1:] if not env.get(k)]
    if missing:
      raise ValueError(f"--distributed with JAX_COORDINATOR_ADDRESS={address} also needs "
                       f"{' and '.join(missing)} (the process count and this process' index)")
    count, index = _int_env(env, "JAX_NUM_PROCESSES"), _int_env(env, "JAX_PROCESS_ID")
    if count < 1:
      raise ValueError(f"JAX_NUM_PROCESSES={count} must be >= 1")
    if not 0 <= index < count:
      raise ValueError(f"JAX_PROCESS_ID={index} is out of range for JAX_NUM_PROCESSES={count}: "
                       f"number the processes 0 to {count - 1}")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
      raise ValueError(f"JAX_COORDINATOR_ADDRESS={address!r} must be HOST:PORT (process 0's "
                       f"host)")
    kwargs.update(coordinator_address=address, num_processes=count, process_id=index)
    if host in ("127.0.0.1", "localhost"):   # one machine: do not listen on every interface
      kwargs["coordinator_bind_address"] = address
    if index:   # JAX aborts the whole process when it cannot register: find out first
      _wait_for_coordinator(host, int(port), timeout)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:   # JAX raises RuntimeError/XlaRuntimeError subclasses with long texts
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    where = f"the coordinator at {address}" if address else "the cluster's coordinator"
    raise ValueError(f"--distributed: initialising with {where} failed: {text[:300]}") from None


def _wait_for_coordinator(host, port, timeout):
  """Returns once process 0's coordinator accepts connections; ValueError after `timeout` s."""
  deadline = time.monotonic() + timeout
  while True:
    try:
      socket.create_connection((host, port), timeout=1).close()
      return
    except OSError:
      if time.monotonic() > deadline:
        raise ValueError(f"--distributed: could not reach the coordinator at {host}:{port} "
                         f"within {timeout} s (LLM_DISTRIBUTED_TIMEOUT); start process 0 "
                         f"(JAX_PROCESS_ID=0) on that host, or fix JAX_COORDINATOR_ADDRESS"
                         ) from None
      time.sleep(0.5)


def _int_env(env, name, default=None):
  value = env.get(name)
  if value is None or value == "":
    return default
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{name}={value!r} must be an integer") from None


def mesh_shape(mesh_config, num_devices):
  """Resolves `-1` in `mesh.data/fsdp/tensor` and checks the product equals the device count."""
  sizes = {name: int(mesh_config[name]) for name in MESH_AXES}
  free = [name for name, size in sizes.items() if size == -1]
  if len(free) > 1:
    raise ValueError(f"mesh: at most one axis may be -1, got {sizes}")
  if any(size == 0 or size < -1 for size in sizes.values()):
    raise ValueError(f"mesh: axis sizes must be positive or -1, got {sizes}")
  fixed = math.prod(size for size in sizes.values() if size != -1)
  if free:
    if num_devices % fixed:
      raise ValueError(f"mesh: {sizes} needs a multiple of {fixed} devices, but there are "
                       f"{num_devices}")
    sizes[free[0]] = num_devices // fixed
  if math.prod(sizes.values()) != num_devices:
    raise ValueError(f"mesh: data*fsdp*tensor = {math.prod(sizes.values())} ({sizes}) must equal "
                     f"the {num_devices} available devices (use -1 for one axis to take the rest)")
  return sizes


def make_mesh(mesh_config, devices=None):
  devices = jax.devices() if devices is None else devices
  sizes = mesh_shape(mesh_config, len(devices))
  device_grid = np.asarray(devices).reshape([sizes[name] for name in MESH_AXES])
  # Auto axes: classic GSPMD propagation, which the logical-constraint annotations rely on.
  return Mesh(device_grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def axis_rules(config):
  """The config's rules as the tuple-of-pairs form Flax expects."""
  return tuple((name, tuple(mesh) if isinstance(mesh, (list, tuple)) else mesh)
               for name, mesh in config.logical_axis_rules)


def scoped(fn, mesh, rules):
  """`fn` traced with `mesh` and the logical-axis `rules` in scope, so that the models'
  activation constraints (nn.with_logical_constraint) bind. Without both, Flax drops them
  silently and GSPMD infers every activation's layout from the parameters and inputs alone."""
  @functools.wraps(fn)
  def run(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(rules):
      return fn(*args, **kwargs)
  return run


def logical_specs(boxed_tree):
  """Logical PartitionSpecs of a tree of LogicallyPartitioned boxes (PartitionSpec() for plain
  arrays). Unlike nn.get_partition_spec, leafless nodes such as optax's MaskedNode (frozen
  parameters' missing optimizer state) stay leafless, so the tree still matches the state."""
  def spec(x):
    if not isinstance(x, nn.Partitioned):
      return PartitionSpec()
    # optax maps over boxed params, so a MaskedNode can sit inside a box: keep it leafless.
    return x.get_partition_spec() if jax.tree.leaves(x.value) else x.value
  return jax.tree.map(spec, boxed_tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def logical_to_sharding(logical_specs, mesh, rules):
  """Maps a pytree of logical PartitionSpecs to NamedShardings on `mesh`. Only PartitionSpecs
  are leaves, so leafless nodes (optax's MaskedNode for frozen parameters) stay as they are."""
  return jax.tree.map(lambda spec: NamedSharding(mesh, nn.logical_to_mesh_axes(spec, rules)),
                      logical_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_sharding(mesh, rules, ndim=2):
  """Sharding of an `ndim`-dimensional input array (batch, length, ...): the batch over the axes
  the `batch` rule names, the rest whole."""
  spec = nn.logical_to_mesh_axes(("batch", "length"), rules)
  return NamedSharding(mesh, PartitionSpec(*spec[:ndim]))


def process_rows(mesh, rules, batch_size):
  """The rows of a global batch of `batch_size` that this process's devices hold."""
  index_of = batch_sharding(mesh, rules, 1).addressable_devices_indices_map((batch_size,))
  return sorted({row for index in index_of.values() for row in range(batch_size)[index[0]]})


def data_parallel_size(mesh_sizes, rules):
  """How many ways the batch dimension is split; mesh_sizes maps axis name -> size (a
  Mesh.shape, or mesh_shape()'s result before any mesh exists)."""
  spec = nn.logical_to_mesh_axes(("batch",), rules)[0]
  names = () if spec is None else (spec,) if isinstance(spec, str) else spec
  return math.prod(mesh_sizes[name] for name in names)


def check_divisible(abstract_tree, shardings, mesh):
  """Raises a ValueError naming the first array whose dimension a mesh axis does not divide."""
  flat_arrays = jax.tree_util.tree_leaves_with_path(abstract_tree)
  flat_shardings = jax.tree_util.tree_leaves(
      shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
  for (path, array), sharding in zip(flat_arrays, flat_shardings):
    for dim, axes in zip(array.shape, sharding.spec):
      if axes is None:
        continue
      names = (axes,) if isinstance(axes, str) else axes
      ways = math.prod(mesh.shape[name] for name in names)
      if dim % ways:
        raise ValueError(f"{jax.tree_util.keystr(path)} has shape {array.shape}: dimension {dim} "
                         f"cannot be split {ways} ways over mesh axes {names}; change the mesh or "
                         f"logical_axis_rules")


def replicated(mesh):
  return NamedSharding(mesh, PartitionSpec())
