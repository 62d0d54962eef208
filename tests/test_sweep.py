"""Sweeps: members from get_sweep, checked before anything runs, each one llm.train run in its
own directory; a rerun skips finished members; a failing member fails the sweep, not the others."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from llm import cli, reports, sweep_results, sweeps

from helpers import ROOT, TINY, config_flags, losses, run_cli, xla_flags

GPT_TINY = ROOT / "configs" / "gpt_tiny.py"


def sweep_file(tmp_path, members, name="sweep.py", evaluations=None):
  """A config file: gpt_tiny's get_config, and a get_sweep returning `members` (Python source)
  and a get_evaluations returning `evaluations` (source) if given."""
  path = tmp_path / name
  path.write_text(f"from llm import cli\n\n\ndef get_config(arg=None):\n"
                  f"  return cli.load_config({str(GPT_TINY)!r})\n\n\n"
                  f"def get_sweep(arg=None):\n  return {members}\n"
                  + (f"\n\ndef get_evaluations(arg=None):\n  return {evaluations}\n"
                     if evaluations else ""))
  return path


def planned(path, **common):
  evaluations, _ = sweeps.sweep_settings(path, None)
  return sweeps.plan(sweeps.sweep_overrides(path, None), cli.load_config(path, None, **common),
                     evaluations=evaluations)


def test_member_names_spell_their_overrides():
  assert sweeps.member_name({"nsp": False, "seed": 1}) == "nsp=False,seed=1"
  assert sweeps.member_name({}) == "base"
  assert sweeps.member_name({"init": "runs/bert tiny"}) == "init=runs_bert_tiny"
  long = sweeps.member_name({"init": "x" * 300})
  assert len(long) < 120 and long.startswith("init=xxx")
  assert long != sweeps.member_name({"init": "x" * 301})


@pytest.mark.parametrize("members,message", [
    ("[]", "returned []; it returns a non-empty list of override dicts"),
    ("[{'seed': 0}, 'seed=1']", "member 1 is 'seed=1', not a dict of config overrides"),
    ("[{'seed': 0}, {'seed': 0}]", "member 1 (seed=0) repeats member 0"),
    ("[{'init': 'a/b'}, {'init': 'a b'}]", "member 1 (init=a_b) would share the directory "
                                           "init=a_b with member 0"),
    ("[{'sed': 0}]", "member 0 (sed=0): unknown config key sed; did you mean seed?"),
    ("[{'logical_axis_rules': []}]", "is a list, which the command line cannot set"),
    ("[{'mesh': {'data': 2}}]", "mesh={'data': 2} is a dict, which a member cannot pass"),
    ("[{'seed': 0}, {'optimizer.learning_rate': -1.0}]",
     "member 1 (optimizer.learning_rate=-1.0): optimizer.learning_rate=-1.0 must be > 0"),
    ("[{'seed': 'one'}]", "member 0 (seed=one): seed='one' is text; the config holds a whole "
                          "number (0)"),
    ("[{'corpus': 1}]", "member 0 (corpus=1): corpus=1 is a whole number; the config holds text"),
    ("[{'nsp': 1}]", "nsp=1 is a whole number; the config holds True or False (True)"),
    ("[{'optimizer.learning_rate': True}]", "is True or False; the config holds a number"),
    ("[{'init': None}]", "init=None is a NoneType, which a member cannot pass to llm.train"),
    ("[1 / 0]", "get_sweep() in "),
])
def test_bad_sweeps_are_named_before_anything_runs(tmp_path, members, message):
  with pytest.raises(ValueError) as e:
    planned(sweep_file(tmp_path, members))
  assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
  if members == "[1 / 0]":   # the user's own error, named in one line
    assert str(e.value).endswith("raised ZeroDivisionError: division by zero")


@pytest.mark.parametrize("evaluations,message", [
    ("{'len': {'seq_lne': 64}}", "member 0 (seed=0), evaluation len: unknown config key seq_lne"),
    ("{'len': {'seq_len': 1}}", "member 0 (seed=0), evaluation len: seq_len=1 must be >= 2"),
    ("{'a/b': {'seq_len': 64}}", "returned {'a/b': {'seq_len': 64}}; it returns {name: overrides}"),
    ("[{'seq_len': 64}]", "get_evaluations() in "),
    ("{'d': {'command': 'plan'}}", "an entry's 'command' is one of ['evaluate', 'generate', "
                                   "'train']"),
    ("{'d': {'command': 'train'}}", "'train' (a downstream fine-tune) names its 'config' file"),
    ("{'checkpoints': {'command': 'train', 'config': 'configs/finetune_topic.py'}}",
     "names other than ['checkpoints'"),
    ("{'test': {'seq_len': 64}}", "names other than ['checkpoints'"),
    ("{'d': {'seq_len': 64, 'split': 'test'}}", "(and alone takes a 'split')"),
    ("{'d': {'command': 'train', 'config': 'configs/finetune_topic.py', 'seq_lne': 32}}",
     "member 0 (seed=0), evaluation d: unknown config key seq_lne; did you mean seq_len?"),
])
def test_bad_evaluations_are_named_before_anything_runs(tmp_path, evaluations, message):
  with pytest.raises(ValueError) as e:
    planned(sweep_file(tmp_path, "[{'seed': 0}]", evaluations=evaluations))
  assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_member_needs_its_training_then_each_evaluation_it_lacks(tmp_path):
  path = sweep_file(tmp_path, "[{'seed': 3}]", evaluations="{'len64': {'seq_len': 64}}")
  [member] = planned(path, total_steps=5)
  out = tmp_path / "out"
  train, evaluate = sweeps.commands(str(path), out, member, ["--config.total_steps=5"])
  assert train == sweeps.train_command(str(path), out, member, ["--config.total_steps=5"])
  assert evaluate[1:] == ["-m", "llm.evaluate", f"--config={path}", f"--workdir={out / 'seed=3'}",
                          "--config.total_steps=5", "--config.seed=3", "--config.seq_len=64",
                          "--name=len64"]
  (out / "seed=3" / "checkpoints" / "5").mkdir(parents=True)
  assert sweeps.commands(str(path), out, member, []) == [
      *sweeps.evaluation_commands(str(path), out, member, [], "len64")]
  assert not sweeps.finished(out, member)
  (out / "seed=3" / "evaluate_len64.json").write_text("{}")
  assert sweeps.commands(str(path), out, member, []) == [] and sweeps.finished(out, member)


def test_an_evaluation_may_run_llm_generate_with_its_own_flags(tmp_path):
  path = sweep_file(tmp_path, "[{'seed': 3}]", evaluations="{'decode': {'command': 'generate', "
                    "'flags': {'max_new_tokens': 8}, 'model.dropout_rate': 0.0}}")
  [member] = planned(path)
  out = tmp_path / "out"
  [command] = sweeps.evaluation_commands(str(path), out, member, [], "decode")
  assert command[1:] == ["-m", "llm.generate", f"--config={path}", f"--workdir={out / 'seed=3'}",
                         "--config.seed=3", "--config.model.dropout_rate=0.0",
                         "--max_new_tokens=8", "--name=decode"]
  assert sweeps.result_file(out, member, "decode") == out / "seed=3" / "generate_decode.json"


def test_a_config_without_a_sweep_is_named():
  bert = ROOT / "configs" / "bert_tiny.py"
  with pytest.raises(ValueError, match="defines no get_sweep"):
    sweeps.plan(sweeps.sweep_overrides(bert, None), cli.load_config(bert))


@pytest.mark.parametrize("name", sorted(
    p.name for p in (ROOT / "configs").glob("*.py") if "def get_sweep" in p.read_text()))
def test_every_sweep_in_configs_plans_with_its_evaluations_and_report(name):
  path = ROOT / "configs" / name
  evaluations, report = sweeps.sweep_settings(path, None)
  members = sweeps.plan(sweeps.sweep_overrides(path, None), cli.load_config(path),
                        evaluations=evaluations)
  parsed = {name: sweeps.split_evaluation(entry) for name, entry in evaluations.items()}
  assert len(members) >= 3 and all(m.evaluations == parsed for m in members)
  assert set(report) <= set(sweeps.REPORT_KEYS)


def test_gpt_tiny_sweeps_three_seeds():
  members = sweeps.plan(sweeps.sweep_overrides(GPT_TINY, None), cli.load_config(GPT_TINY))
  assert [(m.name, m.total_steps) for m in members] == [
      ("seed=0", 600), ("seed=1", 600), ("seed=2", 600)]


def test_members_get_the_sweeps_flags_then_their_own(tmp_path):
  path = sweep_file(tmp_path, "[{'seed': 1}, {'seed': 2, 'total_steps': 7}]")
  members = planned(path, total_steps=5)
  assert [(m.name, m.total_steps) for m in members] == [("seed=1", 5), ("seed=2,total_steps=7", 7)]
  base = cli.load_config(path, None, total_steps=5)
  listed = sweeps.sweep_overrides(path, None)
  assert [m.index for m in sweeps.plan(listed, base, only=1)] == [1]
  with pytest.raises(ValueError, match=r"--member=2: the sweep has members 0 to 1"):
    sweeps.plan(listed, base, only=2)
  command = sweeps.train_command(f"{path}:x", tmp_path / "out", members[1],
                                 ["--config.total_steps=5"])
  assert command[1:] == ["-m", "llm.train", f"--config={path}:x",
                         f"--workdir={tmp_path / 'out' / 'seed=2,total_steps=7'}",
                         "--config.total_steps=5", "--config.seed=2", "--config.total_steps=7"]


def test_a_sweep_runs_its_members_and_a_rerun_skips_the_finished(tmp_path):
  """Two members train (2 at a time); a third stops on a non-finite loss: it is reported with
  its error and fails the sweep, and the others still finish; a fourth stops early (as a signal
  would stop it) and is not evaluated. A rerun skips finished members."""
  path = sweep_file(tmp_path, "[{'seed': 0}, {'seed': 1, 'optimizer.learning_rate': 3e-3}, "
                              "{'seed': 2, 'nan_at_step': 1}, {'seed': 3, 'stop_at_step': 1}]",
                    evaluations="{'len64': {'seq_len': 64}}")
  flags = config_flags({**TINY, "total_steps": 2, "eval_batches": 1})
  out = tmp_path / "out"
  proc = run_cli("sweep", path, out, *flags, "--parallel=2", devices=1)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines() == [
      f"error: 1 of 4 members failed (seed=2,nan_at_step=1); their logs are in {out / 'logs'}; "
      f"rerun the same command to retry them"], proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert [line.split("]")[0] for line in lines] == ["[1/4", "[2/4", "[3/4", "[4/4"], proc.stdout
  assert any("] seed=3,stop_at_step=1: stopped before its last step (saved; a rerun continues "
             "it)" in line for line in lines), proc.stdout
  assert not (out / "seed=3,stop_at_step=1" / "evaluate_len64.json").exists()
  assert any(line.startswith("[") and "seed=2,nan_at_step=1: failed (exit 1): error: the loss "
             "or gradient norm is not finite at step 1" in line for line in lines), proc.stdout
  done = [line for line in lines if ": done in " in line]
  assert len(done) == 2 and all("eval/loss" in line for line in done), proc.stdout
  runs = {name: out / name for name in ("seed=0", "seed=1,optimizer.learning_rate=0.003")}
  for run in runs.values():
    assert sorted(losses(run)) == [1, 2]
    # Once trained, each member's named evaluation ran: rows of 64 tokens, not the run's 32.
    evaluated = json.loads((run / "evaluate_len64.json").read_text())
    assert evaluated["step"] == 2 and evaluated["perplexity"] > 1
  configs = {name: json.loads((run / "config.json").read_text()) for name, run in runs.items()}
  assert configs["seed=1,optimizer.learning_rate=0.003"]["optimizer"]["learning_rate"] == 3e-3
  assert {c["total_steps"] for c in configs.values()} == {2}
  assert losses(runs["seed=0"]) != losses(runs["seed=1,optimizer.learning_rate=0.003"])
  plan = json.loads((out / "sweep.json").read_text())
  assert plan["members"][2] == {   # its settings: the keys any member overrides
      "name": "seed=2,nan_at_step=1", "overrides": {"seed": 2, "nan_at_step": 1},
      "settings": {"seed": 2, "optimizer.learning_rate": 1e-3, "nan_at_step": 1,
                   "stop_at_step": 0}}
  assert plan["evaluations"] == {"len64": {"seq_len": 64}}
  assert (out / "logs" / "seed=0.log").is_file()
  # The report of these runs: a row per setting (the failed and the stopped member without
  # figures), a curve per member that logged a step.
  table = reports.write_report(out).split("\n\n")[2].splitlines()
  assert table[0].startswith("| optimizer.learning_rate | nan_at_step | stop_at_step | runs |")
  assert [row.split(" | ")[:4] for row in table[2:]] == [
      ["| 0.001", "0", "0", "1"], ["| 0.003", "0", "0", "1"], ["| 0.001", "1", "0", "0 of 1"],
      ["| 0.001", "0", "1", "0 of 1"]], table
  with Image.open(out / "curves.png") as image:
    assert image.format == "PNG"
  train_axis = reports.plot_curves(sweep_results.load_sweep(out), tmp_path / "c.png").axes[0]
  assert len(train_axis.get_lines()) == 3   # seed 3 stopped at step 1: one point, still a line

  before = {name: (run / "metrics.jsonl").read_text() for name, run in runs.items()}
  proc = run_cli("sweep", path, out, *flags, "--member=1", devices=1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.splitlines() == [
      "[1/1] seed=1,optimizer.learning_rate=0.003: finished already",
      f"all 1 member of {out} finished"]
  assert {name: (run / "metrics.jsonl").read_text() for name, run in runs.items()} == before
  assert len(json.loads((out / "sweep.json").read_text())["members"]) == 4   # all, not the one
  proc = run_cli("sweep", path, tmp_path / "dry", *flags, "--dry_run", devices=1)
  assert proc.returncode == 0 and not (tmp_path / "dry").exists(), proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0::3] == ["# member 0: seed=0", "# member 1: seed=1,optimizer.learning_rate=0.003",
                         "# member 2: seed=2,nan_at_step=1", "# member 3: seed=3,stop_at_step=1"]
  assert [shlex.split(line)[2:4] for i, line in enumerate(lines) if i % 3] == [
      ["llm.train", f"--config={path}"], ["llm.evaluate", f"--config={path}"]] * 4


@pytest.mark.fault
def test_sigterm_stops_the_sweep_and_its_member_which_is_then_not_evaluated(tmp_path):
  """SIGTERM to the sweep alone (as kill or a scheduler sends it) reaches the running member:
  it saves and stops, the sweep exits 1 saying so, and the stopped member is not evaluated; an
  evaluation file from before is redone once it is trained."""
  path = sweep_file(tmp_path, "[{'seed': 0}]", evaluations="{'len64': {'seq_len': 64}}")
  flags = config_flags({**TINY, "total_steps": 100000, "eval_batches": 1})
  out = tmp_path / "out"
  stale = out / "seed=0" / "evaluate_len64.json"
  stale.parent.mkdir(parents=True)
  stale.write_text('{"step": 1}')   # as an evaluation of an earlier, unfinished run left it
  proc = subprocess.Popen(
      [sys.executable, "-m", "llm.sweep", f"--config={path}", f"--workdir={out}", *flags],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env={**os.environ, "XLA_FLAGS": xla_flags(1)})
  log = out / "logs" / "seed=0.log"
  deadline = time.monotonic() + 300
  while not (log.is_file() and "step 2:" in log.read_text()) and time.monotonic() < deadline:
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 1 and stderr.strip().splitlines() == [
      "stopped; the members that were running saved a checkpoint: rerun the same command to "
      "continue"], stderr[-3000:]
  saved = [int(p.name) for p in (out / "seed=0" / "checkpoints").iterdir() if p.name.isdigit()]
  assert saved and max(saved) < 100000 and "SIGTERM" in log.read_text()
  assert json.loads(stale.read_text()) == {"step": 1}   # not evaluated
  # Untrained, the member needs its training and then its evaluation again.
  dry = run_cli("sweep", path, out, *flags, "--dry_run", devices=1)
  assert [shlex.split(line)[2] for line in dry.stdout.splitlines()[1:]] == [
      "llm.train", "llm.evaluate"], dry.stdout


def test_a_downstream_fine_tune_starts_from_the_member_and_is_scored_on_its_split(tmp_path):
  """get_evaluations' "train" entry: once a bert_tiny member is trained, finetune_topic starts
  from it in <member>/<name>/ and is scored on the test split; the report reads its figures."""
  path = tmp_path / "sweep.py"
  topic = {**{k: v for k, v in TINY.items() if not k.startswith("model.")}, "total_steps": 2,
           "eval_batches": 1, "optimizer.warmup_steps": 1}
  path.write_text(
      f"from llm import cli\n\n\ndef get_config(arg=None):\n"
      f"  return cli.load_config({str(ROOT / 'configs' / 'bert_tiny.py')!r})\n\n\n"
      f"def get_sweep(arg=None):\n  return [{{'seed': 0}}]\n\n\n"
      f"def get_evaluations(arg=None):\n  return {{'topic': {{'command': 'train', "
      f"'config': 'configs/finetune_topic.py', 'split': 'test', **{topic!r}}}}}\n")
  [member] = planned(path)
  out = tmp_path / "out"
  train, evaluate = sweeps.evaluation_commands(str(path), out, member, [], "topic")
  run = out / "seed=0"
  assert train[2:6] == ["llm.train", "--config=configs/finetune_topic.py",
                        f"--workdir={run / 'topic'}", f"--config.init={run}"]
  assert evaluate[2] == "llm.evaluate" and evaluate[-1] == "--split=test"
  assert sweeps.result_file(out, member, "topic") == run / "topic" / "evaluate_test.json"
  flags = config_flags({**TINY, "total_steps": 2, "eval_batches": 1})
  proc = run_cli("sweep", path, out, *flags, devices=1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads((run / "topic" / "config.json").read_text())["init"] == str(run)
  figures = sweep_results.final_figures(run)
  assert 0 <= figures["topic/evaluate_test/accuracy"] <= 1 and "topic/eval/accuracy" in figures
  assert "eval/mlm_accuracy" in figures   # the member's own
  # Retrained (a longer sweep), a member with an old fine-tune is refused, nothing deleted.
  proc = run_cli("sweep", path, out, *flags, "--config.total_steps=3", devices=1)
  assert proc.returncode == 1 and "its downstream run" in proc.stderr, proc.stderr[-2000:]
  assert (run / "topic" / "evaluate_test.json").is_file()
