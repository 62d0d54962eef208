"""One training run per workdir: an exclusive lock on DIR/train.lock for the run's lifetime; and
`waiting`, the lock under which a shared cache (prepared corpora, tokenizers) is built once.

The lock is an flock(2) on an open file, so the kernel releases it when the process ends, however
it ends: a lock left by a killed run is never stale. The file names the holder for the error line.
(flock does not lock across machines on some network file systems; keep workdirs on one host's
disk or a file system with working flock, as Orbax's own atomic renames also expect.)
"""
import contextlib
import fcntl
import os
import socket


def acquire(workdir):
  """Locks `workdir` for this process, returning the open lock file (keep it; close() releases);
  ValueError naming the other run if one holds it."""
  path = workdir / "train.lock"
  handle = open(path, "a+")   # noqa: SIM115 - held open for the run's lifetime
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    handle.seek(0)
    holder = handle.read().strip() or "another process"
    handle.close()
    raise ValueError(f"{workdir} is in use by another llm.train ({holder}); wait for it to "
                     f"finish, stop it, or use another --workdir") from None
  handle.seek(0)
  handle.truncate()
  handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
  handle.flush()
  return handle


@contextlib.contextmanager
def waiting(path):
  """Holds an exclusive lock on the file `path` for the `with` block, first waiting for whoever
  holds it. Where the file cannot be created (a read-only directory) nobody can build there
  either: no lock is needed."""
  try:
    handle = open(path, "a")   # noqa: SIM115 - closed by the with below
  except OSError:
    yield
    return
  with handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    yield
