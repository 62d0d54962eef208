"""Keeping third-party output off the terminal where our one line already says what happened:
Orbax's and TensorStore's background threads print a traceback per array when a save or a
restore fails, racing with that line; Gloo prints a connection banner from C++ to stdout."""
import atexit
import contextlib
import ctypes
import functools
import os
import sys
import threading


@functools.cache
def devnull():
  return open(os.devnull, "w")  # noqa: SIM115 - one stream, open until exit


class HeldStderr:
  """sys.stderr while a run saves in the background: other threads' writes are held until the
  save in flight ends (printed if it succeeded, dropped if it failed: our error says why in one
  line); the main thread's go through, except while `main_muted` (it waits on a save, and Orbax
  logs the failure there too)."""

  def __init__(self, stream):
    self.stream, self.held, self._lock = stream, [], threading.Lock()
    self.main_muted = False

  def write(self, text):
    if threading.current_thread() is threading.main_thread():
      return len(text) if self.main_muted else self.stream.write(text)
    with self._lock:
      self.held.append(text)
    return len(text)

  def release(self, show):
    with self._lock:
      held, self.held = self.held, []
    if show and held:
      self.stream.write("".join(held))

  def close(self):
    """Puts sys.stderr back (the end of a run, however it ends)."""
    self.release(show=True)
    if sys.stderr is self:
      sys.stderr = self.stream

  def __getattr__(self, name):
    return getattr(self.stream, name)


def hold_background_stderr():
  """Holds background threads' stderr until each save ends (see HeldStderr); close() it."""
  sys.stderr = HeldStderr(sys.stderr)
  return sys.stderr


@contextlib.contextmanager
def main_thread_muted():
  """While the main thread waits on a save that may fail: under HeldStderr (yielded, else None)
  its writes are dropped and the other threads' kept back; otherwise sys.stderr is muted."""
  held = sys.stderr if isinstance(sys.stderr, HeldStderr) else None
  previous = sys.stderr
  if held:
    held.main_muted = True
  else:
    sys.stderr = devnull()
  try:
    yield held
  finally:
    if held:
      held.main_muted = False
    else:
      sys.stderr = previous


class _MutedReads:
  """Mutes sys.stderr around reads that may fail noisily. After a failure it stays muted, since
  the failed read's threads go on printing as they die, until a later read succeeds (an older
  step's) or for good if none does (our error line goes to sys.__stderr__). One per process, as
  sys.stderr is."""

  def __init__(self):
    self._unmuted = None   # sys.stderr as it was before the first read still muted

  @contextlib.contextmanager
  def around(self):
    if self._unmuted is None:
      self._unmuted = sys.stderr
    sys.stderr = devnull()
    yield   # a failure propagates from here and leaves sys.stderr muted
    sys.stderr, self._unmuted = self._unmuted, None


muted_reads = _MutedReads().around


def drop_native_stdout():
  """Sends Python's sys.stdout to the real stdout and what native libraries write to file
  descriptor 1 to /dev/null. Gloo (CPU collectives) prints its connection banner there from
  several threads at once, piece by piece, so its fragments interleave into lines that no line
  filter can tell from ours. Returns the function that puts stdout back (also run at exit)."""
  sys.stdout.flush()
  previous, real = sys.stdout, os.dup(1)
  sys.stdout = open(real, "w", buffering=1, encoding=previous.encoding,  # noqa: SIM115
                    errors=previous.errors, closefd=False)
  null = os.open(os.devnull, os.O_WRONLY)
  os.dup2(null, 1)
  os.close(null)

  def restore():
    if sys.stdout is not previous:
      sys.stdout.flush()
      ctypes.CDLL(None).fflush(None)   # native writes still buffered go to /dev/null first
      os.dup2(real, 1)
      sys.stdout = previous
  atexit.register(restore)
  return restore
