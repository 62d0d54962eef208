"""Run logs: <workdir>/metrics.jsonl (one JSON object per logged step), TensorBoard events."""
import json
import os
import pathlib
import socket
import sys
import time

import jax
import tqdm
# TensorBoard's own protos and record framing: writing events needs no TensorFlow (importing it
# costs seconds per run and prints its CPU-feature banner).
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter


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
    self.tensorboard = EventFile(pathlib.Path(workdir) / "tensorboard")

  def write(self, step, metrics):
    if not self.enabled:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    with self.path.open("a") as f:   # one write of one whole line
      f.write(json.dumps(record) + "\n")
      f.flush()
    self.tensorboard.scalars(int(step), {k: v for k, v in record.items() if k != "step"})

  def close(self):
    if self.enabled:
      self.tensorboard.close()


class EventFile:
  """One TensorBoard event file of scalars (what tf.summary.scalar would write), appended."""

  def __init__(self, folder):
    folder.mkdir(parents=True, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    number = 0
    while (folder / f"{name}.{number}.v2").exists():   # two runs in one process and second
      number += 1
    self._file = (folder / f"{name}.{number}.v2").open("xb")
    self._records = RecordWriter(self._file)
    self._write(event_pb2.Event(file_version="brain.Event:2"))

  def _write(self, event):
    event.wall_time = time.time()
    self._records.write(event.SerializeToString())
    self._records.flush()

  def scalars(self, step, values):
    values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
    self._write(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=values)))

  def close(self):
    self._file.close()
