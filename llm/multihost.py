"""How the processes of one run agree: process 0's words for all, every process's words for all,
and a vote over the coordination service that works while a peer is stuck in a collective.

The collectives return at once in a single-process run."""
import itertools
import time

import jax
import numpy as np
from jax.experimental import multihost_utils


def _to_bytes(text, size):
  """`text` as `size` zero-padded bytes, the fixed shape a collective needs ("" is all zeros)."""
  raw = np.zeros(size, np.uint8)
  encoded = text.encode()[:size]
  raw[:len(encoded)] = np.frombuffer(encoded, np.uint8)
  return raw


def _to_text(raw):
  return bytes(np.asarray(raw, np.uint8)).rstrip(b"\0").decode(errors="replace")


def first_process_text(text, size=1024):
  """Process 0's `text` on every process (a collective: all processes call it together)."""
  if jax.process_count() == 1:
    return text
  return _to_text(multihost_utils.broadcast_one_to_all(_to_bytes(text, size)))


def every_process_text(text, size=512):
  """[each process's `text`], in process order (a collective)."""
  if jax.process_count() == 1:
    return [text]
  gathered = np.asarray(multihost_utils.process_allgather(_to_bytes(text, size)))
  return [_to_text(row) for row in gathered.reshape(-1, size)]


def largest(values):
  """The elementwise maximum of an integer array over all processes (a collective)."""
  if jax.process_count() == 1:
    return np.asarray(values)
  return np.max(multihost_utils.process_allgather(np.asarray(values)), axis=0)


_votes = itertools.count()   # every vote of this process gets its own keys (the same on all)


def vote_all_failed(topic, cause, wait):
  """Whether every process failed at `topic` (a name unique to this failure, the same on every
  process), told through the coordination service's key-value store, not a collective: the
  processes that did not fail are waiting in one. This process posts `cause`, then waits up to
  `wait` s for the others' posts. The first process to decide writes the verdict and every later
  one follows it, so that a process whose collective broke only because a peer stopped (its
  failure comes late and finds the peer's) does not decide otherwise.

  Returns (all failed, {process index: cause} of the failures seen). A service that fails (a
  peer is gone) counts as "not all"."""
  # JAX has no public handle on the key-value store; Orbax reaches it the same way.
  from jax._src import distributed
  client, count = distributed.global_state.client, jax.process_count()
  topic = f"{topic}/{next(_votes)}"
  failed, verdict = [], "stop"
  try:
    client.key_value_set(f"{topic}/failed/{jax.process_index()}", cause)
    deadline = time.monotonic() + wait
    while len(failed) < count and time.monotonic() < deadline:
      time.sleep(0.2)
      failed = client.key_value_dir_get(f"{topic}/failed")
    try:   # the first verdict stands
      client.key_value_set(f"{topic}/verdict", "all" if len(failed) == count else "stop")
    except Exception:  # noqa: BLE001 - another process decided first
      pass
    verdict = client.blocking_key_value_get(f"{topic}/verdict", 10_000)
  except Exception:  # noqa: BLE001 - the service is failing: a peer is gone
    pass
  causes = {int(key.rsplit("/", 1)[1]): value for key, value in failed}
  return verdict == "all" and len(causes) == count, causes
