"""Runs every member of a config file's sweep (get_sweep(arg)), each as its own llm.train run in
<workdir>/<member name>/, then the evaluations the file's get_evaluations names (llm.evaluate
--name=NAME); rerunning the same command skips finished members and resumes the rest.

  python -m llm.sweep --config=configs/gpt_tiny.py --workdir=sweeps/gpt_seeds [--parallel=2]
      [--member=I] [--dry_run] [--config.key=value]

--config.KEY=VALUE flags go to every member (before its own overrides). --member=I runs member
I alone (from 0; e.g. a SLURM array task's index), --dry_run prints the commands each member
still needs ("# member I: name", then its llm.train and llm.evaluate lines) and runs none.
Each member logs to <workdir>/logs/<member name>.log; <workdir>/sweep.json lists the members.
"""
import pathlib
import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from llm import cli, sweep_runs, sweeps

flags.DEFINE_integer("parallel", 1, "How many members run at once.")
flags.DEFINE_integer("member", None, "Run only this member (its index in get_sweep, from 0).")
flags.DEFINE_bool("dry_run", False, "Print each member's commands (training, evaluations); run "
                  "nothing.")


def sweep(spec, workdir, common_flags):
  f = flags.FLAGS
  if f.parallel < 1:
    raise ValueError(f"--parallel={f.parallel} must be >= 1")
  if not workdir:
    raise ValueError("--workdir=DIR is required (the sweep's directory: one per member in it)")
  path, _, arg = spec.partition(":")
  listed = sweeps.sweep_overrides(path, arg or None)   # get_sweep runs once
  evaluations, report = sweeps.sweep_settings(path, arg or None)
  members = sweeps.plan(listed, cli.FLAGS.config, only=f.member, evaluations=evaluations)
  if f.dry_run:
    workdir = cli.workdir_path(workdir, create=False, writable=False) if pathlib.Path(
        workdir).exists() else pathlib.Path(workdir).expanduser().absolute()
    for m in members:
      print(f"# member {m.index}: {m.name}")
      for command in sweeps.commands(spec, workdir, m, common_flags):
        print(shlex.join(command))
    return
  workdir = cli.workdir_path(workdir)
  sweeps.write_plan(workdir, spec, common_flags, listed, evaluations, report, cli.FLAGS.config)
  failed, stopped = sweep_runs.run(spec, workdir, common_flags, members, f.parallel)
  if failed:
    raise ValueError(f"{len(failed)} of {len(members)} members failed ({', '.join(failed)}); "
                     f"their logs are in {workdir / 'logs'}; rerun the same command to retry them")
  if stopped:
    raise ValueError(f"{len(stopped)} of {len(members)} members were stopped before their last "
                     f"step ({', '.join(stopped)}) and saved; rerun the same command to continue "
                     f"them")
  print(f"all {len(members)} member{'s' * (len(members) != 1)} of {workdir} finished")


def main(argv):
  cli.no_arguments(argv)
  spec = next(iter(cli.config_specs(sys.argv[1:])), None)
  # The --config.KEY=VALUE flags as parsed (either spelling on the command line), for members.
  common_flags = [f"--config.{k}={v}" for k, v in config_flags.get_override_values(
      cli.FLAGS["config"]).items()] if spec else []
  cli.run(sweep, spec, cli.FLAGS.workdir, common_flags)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
