"""Run logs: <workdir>/metrics.jsonl (one JSON object per logged step), TensorBoard events."""
import json
import pathlib
import sys

import jax
import tqdm


def log(message):
  """A progress line on stdout, from the first process only; written through tqdm, which
  clears and redraws a progress bar around it instead of leaving the two mixed on the screen."""
  if jax.process_index() == 0:
    tqdm.tqdm.write(str(message), file=sys.stdout)
    sys.stdout.flush()


class MetricWriter:
  """Appends metrics; on resume, drops lines past the restored step so no step appears twice."""

  def __init__(self, workdir, resume_step=0):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    self.path = pathlib.Path(workdir) / "metrics.jsonl"
    if self.path.exists():
      kept = []
      for number, line in enumerate(self.path.read_text(errors="replace").splitlines(), 1):
        try:
          record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:   # torn by a crash mid-write: only ever the last line
          log(f"dropped unreadable line {number} of {self.path} (cut off by a crash)")
          continue
        if record is not None and record.get("step", 0) <= resume_step:
          kept.append(line)
      self.path.write_text("".join(line + "\n" for line in kept))
    import tensorflow as tf  # already loaded by TFDS; only its summary writer is used here
    self.tensorboard = tf.summary.create_file_writer(str(pathlib.Path(workdir) / "tensorboard"))
    self._tf = tf

  def write(self, step, metrics):
    if not self.enabled:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    with self.path.open("a") as f:   # one write of one whole line
      f.write(json.dumps(record) + "\n")
      f.flush()
    with self.tensorboard.as_default(step=int(step)):
      for name, value in metrics.items():
        self._tf.summary.scalar(name, float(value))
    self.tensorboard.flush()

  def close(self):
    if self.enabled:
      self.tensorboard.close()
