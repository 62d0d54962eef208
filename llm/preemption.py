"""SIGTERM (a preempted job) and SIGINT (Ctrl-C) during training: save at the next step boundary,
then stop. A second signal exits at once; Orbax commits a step by renaming its finished temporary
directory, so that never damages the last complete checkpoint.

With several processes, each gets the signal at its own moment: JAX's preemption sync point
(set up by jax.distributed.initialize, which listens for SIGTERM) names one step for all.
"""
import os
import signal
import sys
import threading

import jax
from jax.experimental import multihost_utils

EXIT_CODES = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: 128 + signal.SIGINT}


class Watch:
  """Catches SIGTERM/SIGINT while it is open (main thread only; else it watches nothing)."""

  def __init__(self):
    self.name = None       # the signal received, e.g. "SIGTERM"
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in EXIT_CODES:
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, sig, frame):
    del frame
    if self.name:   # the second signal: go now
      print(f"\n{signal.Signals(sig).name} again: exiting without saving", file=sys.__stderr__,
            flush=True)
      os._exit(EXIT_CODES[sig])
    self.name = signal.Signals(sig).name
    print(f"\n{self.name}: saving a checkpoint at the end of this step "
          f"(send it again to exit at once)", file=sys.__stderr__, flush=True)

  def reached(self, step):
    """Whether to save and stop after `step`: the same answer on every process."""
    if jax.process_count() > 1:
      if multihost_utils.reached_preemption_sync_point(step):
        self.name = self.name or "SIGTERM"
        return True
      return False
    return self.name is not None

  def close(self):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous = {}
