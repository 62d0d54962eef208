"""SHA256SUMS of a checkpoint step: written by the save's background thread before the step is
committed, so every committed step has one, and checked before a step is read (`sha256sum -c
SHA256SUMS` checks it by hand)."""
import hashlib

SUMS = "SHA256SUMS"


def sha256(path):
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _item_files(step_dir):
  """The files of a step's items (state/, data/, config/, tokenizer/): the step's own metadata
  file is rewritten after the commit, so it is not summed."""
  return sorted(p for item in step_dir.iterdir() if item.is_dir()
                for p in item.rglob("*") if p.is_file())


def write(step_dir):
  """SHA256SUMS of a finished, not yet committed step. Orbax runs this on the primary process
  only, after every process wrote its shards to the shared file system."""
  lines = [f"{sha256(p)}  {p.relative_to(step_dir)}\n" for p in _item_files(step_dir)]
  (step_dir / SUMS).write_text("".join(lines))


def mismatches(step_dir):
  """How the files of a step differ from its SHA256SUMS ("" when they do not). Every step this
  code ever saved has one, so a step without it is unreadable (its files could be anything)."""
  sums = step_dir / SUMS
  if not sums.is_file():
    return f"its {SUMS} is missing"
  bad = []
  for line in sums.read_text(errors="replace").splitlines():
    digest, _, name = line.partition("  ")
    path = step_dir / name
    if not name:
      bad.append(f"{SUMS} line {line[:40]!r} unreadable")
    elif not path.is_file():
      bad.append(f"{name} missing")
    else:
      try:
        if sha256(path) != digest:
          bad.append(f"{name} changed")
      except OSError as e:   # a verdict, not an exception: process 0 must still tell the others
        bad.append(f"{name} unreadable ({e.strerror})")
  if not bad:
    return ""
  return (f"{len(bad)} file{'s differ' if len(bad) > 1 else ' differs'} from {SUMS}: {bad[0]}"
          + (", ..." if len(bad) > 1 else ""))
