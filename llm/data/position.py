"""The data position a checkpoint holds: grain writes each process's iterator state as
`data/process_<i>-of-<n>.json` in the step, {"input_shards": S, "shards": {shard: position}}
holding the input shards that process built."""
import json

import jax


class MissingShard(ValueError):
  """A saved data position lacks an input shard this process builds."""


class UnreadablePosition(ValueError):
  """A step's data position that cannot be used; the message is the short cause."""


def merge_states(states):
  """The data positions saved by every process of a run -> one state holding every shard any
  of them built (processes that built the same shard saved the same position for it)."""
  merged = {"input_shards": 1, "shards": {}}
  for state in states:
    merged["input_shards"] = state["input_shards"]
    merged["shards"].update(state["shards"])
  return merged


def restore(data_iterator, step_dir):
  """Sets `data_iterator`'s position from `step_dir`: from this process's own file when it holds
  every input shard this process builds (the same processes and mesh as the saving run), else
  from every process's file merged. UnreadablePosition naming the file that is unreadable, not
  JSON or not this pipeline's state; ValueError when the step holds no position at all."""
  data_dir = step_dir / "data"
  mine = data_dir / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
  saved = sorted(data_dir.glob("process_*-of-*.json"))
  if not saved:
    raise ValueError(f"checkpoint {step_dir} holds no data position (data/process_*.json); it "
                     f"cannot resume training")

  def unreadable(path, error):
    first_line = (str(error).splitlines() or [""])[0][:120]
    return UnreadablePosition(f"{path.relative_to(step_dir)} is unreadable "
                              f"({type(error).__name__}: {first_line})")

  def read(path):
    try:
      return json.loads(path.read_text())
    except Exception as e:  # noqa: BLE001 - unreadable or not JSON
      raise unreadable(path, e) from None

  try:
    if mine in saved:
      try:
        data_iterator.set_state(merge_states([read(mine)]))
        return
      except MissingShard:
        pass   # saved by other processes or another mesh: the others' files hold the rest
    data_iterator.set_state(merge_states([read(p) for p in saved]))
  except UnreadablePosition:
    raise
  except Exception as e:  # noqa: BLE001 - not this pipeline's state
    raise unreadable(mine if mine in saved else data_dir, e) from None
