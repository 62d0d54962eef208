"""The red team's table: bad inputs, each with the one line it must end in (in-process where no
process is needed; the entry points' own runs are in test_cli, test_generate and test_faults).

A row is (input, the words the error must hold). Families: config values (the ranges table and
the checks beside it), command lines (parse_flags), workdirs and files, and failed writes."""
import errno
import json
import math
import os

import pytest

from llm import cli, config_checks, runlog
from llm.base_config import all_ranges, base_config
from llm.data import corpora, tokenizer as tokenizer_lib

from helpers import ROOT, tiny_config

CONFIG_VALUES = [
    ({"model.dropout_rate": 1.5}, "model.dropout_rate=1.5 must be in [0, 1)"),
    ({"model.dropout_rate": -0.5}, "model.dropout_rate=-0.5 must be in [0, 1)"),
    ({"model.attention_dropout_rate": 1.0}, "model.attention_dropout_rate=1.0 must be in [0, 1)"),
    ({"optimizer.b1": 2.0}, "optimizer.b1=2.0 must be in [0, 1)"),
    ({"optimizer.b2": 1.0}, "optimizer.b2=1.0 must be in [0, 1)"),
    ({"optimizer.eps": 0.0}, "optimizer.eps=0.0 must be > 0"),
    ({"optimizer.end_lr_ratio": 1.5}, "optimizer.end_lr_ratio=1.5 must be in [0, 1]"),
    ({"optimizer.learning_rate": math.inf}, "optimizer.learning_rate=inf must be finite and > 0"),
    ({"optimizer.weight_decay": math.nan}, "optimizer.weight_decay=nan must be finite and >= 0"),
    ({"optimizer.clip_norm": math.inf}, "optimizer.clip_norm=inf must be finite and >= 0 (0 = no"),
    ({"optimizer.warmup_steps": -1}, "optimizer.warmup_steps=-1 must be >= 0"),
    ({"optimizer.no_decay": "("}, "optimizer.no_decay='(' is not a valid regex"),
    ({"lora.rank": -1}, "lora.rank=-1 must be >= 0 (0 = no LoRA)"),
    ({"lora.alpha": 0.0}, "lora.alpha=0.0 must be > 0"),
    ({"model.num_heads": 0}, "model.num_heads=0 must be >= 1"),
    ({"model.embed_dim": 0}, "model.embed_dim=0 must be >= 1"),
    ({"model.num_layers": 0}, "model.num_layers=0 must be >= 1"),
    ({"model.mlp_dim": -4}, "model.mlp_dim=-4 must be >= 1"),
    ({"model.max_len": 0}, "model.max_len=0 must be >= 1"),
    ({"model.head_dim": -1}, "model.head_dim=-1 must be >= 0 (0 = embed_dim / num_heads)"),
    ({"model.num_kv_heads": -2}, "model.num_kv_heads=-2 must be >= 0 (0 = num_heads)"),
    ({"model.layer_norm_eps": 0.0}, "model.layer_norm_eps=0.0 must be > 0"),
    ({"model.rope_base": 1.0}, "model.rope_base=1.0 must be > 1"),
    ({"model.relative_buckets": 1}, "model.relative_buckets=1 must be >= 2"),
    ({"model.num_classes": -1}, "model.num_classes=-1 must be >= 0"),
    ({"model.prompt_length": -3}, "model.prompt_length=-3 must be >= 0"),
    ({"model.attention_impl": "bogus"}, "model.attention_impl='bogus': expected one of"),
    ({"model.attention_impl": "cudnn"}, "model.attention_impl='cudnn' needs an NVIDIA GPU"),
    ({"model.dtype": "float16"}, "model.dtype='float16': expected one of"),
    ({"model.prompt_length": 200}, "is longer than model.max_len=128 (the position table); set "
                                   "model.max_len >= 232 or a smaller model.prompt_length"),
    ({"total_steps": 0}, "total_steps=0 must be >= 1"),
    ({"batch_size": -8}, "batch_size=-8 must be >= 1"),
    ({"seq_len": 1}, "seq_len=1 must be >= 2"),
    ({"vocab_size": 0}, "vocab_size=0 must be >= 1"),
    ({"extra_ids": -1}, "extra_ids=-1 must be >= 0"),
    ({"extra_ids": 100000}, "extra_ids=100000: only the objectives that read ids past the "
                           "tokenizer's take it ("),
    ({"mask_prob": 1.0}, "mask_prob=1.0 must be in (0, 1)"),
    ({"span_corruption.noise_density": 0.0}, "span_corruption.noise_density=0.0 must be in (0, 1)"),
    ({"qa.doc_stride": 0}, "qa.doc_stride=0 must be >= 1"),
    ({"seq2seq.target_len": 1}, "seq2seq.target_len=1 must be >= 2 (a piece and </s>)"),
    ({"decode.num_beams": 0}, "decode.num_beams=0 must be >= 1 (1 = greedy)"),
    ({"decode.length_penalty": math.nan}, "decode.length_penalty=nan must be a finite number"),
    ({"decode.max_examples": -1}, "decode.max_examples=-1 must be >= 0 (0 = the whole split)"),
    ({"seed": -1}, "seed=-1 must be in [0, 4294967296)"),
    ({"seed": 2**32}, "seed=4294967296 must be in [0, 4294967296)"),
    ({"log_every": -1}, "log_every=-1 must be >= 0 (0 = only at the end)"),
    ({"max_nonfinite_skips": -1}, "max_nonfinite_skips=-1 must be >= 0"),
    ({"stop_at_step": 10}, "stop_at_step=10 is past total_steps=4, so it would never happen"),
    ({"nan_at_step": 100}, "nan_at_step=100 is past total_steps=4"),
    ({"tokenizer.model_type": "bogus"}, "tokenizer.model_type='bogus': expected one of ['unigram'"),
    ({"mesh.fsdp": 0}, "mesh: axis sizes must be positive or -1"),
    ({"masking": "dynamc"}, "masking='dynamc': expected 'static' or 'dynamic'"),   # any objective
    ({"mesh.data": 3}, "must equal the 8 available devices"),
    ({"mesh.data": 3, "mesh.fsdp": -1}, "needs a multiple of 3 devices"),
    ({"batch_size": 12}, "batch_size=12 must be divisible by the 8 data-parallel"),
    ({"seq_len": 256}, "seq_len=256 is longer than model.max_len=128"),
    ({"model.position": "xpos"}, "model.position='xpos'"),
    ({"model.num_heads": 3}, "model.embed_dim=64 is not divisible by model.num_heads=3"),
    ({"objective": "span"}, "objective='span'"),
    ({"corpus": "mixture"}, "corpus='mixture' needs a positive weight for at least one corpus"),
    ({"mixture.weights.sotu": -1.0},
     "mixture.weights.sotu=-1.0 must be >= 0 (0 = not in the mixture)"),
    ({"corpus": "mixture", "mixture.weights.sotu": 1.0, "objective": "classification"},
     "corpus='mixture' is for pretraining: objective='classification' reads labels"),
]


@pytest.mark.parametrize("overrides,expected", CONFIG_VALUES,
                         ids=[" ".join(f"{k}={v}" for k, v in o.items()) for o, _ in CONFIG_VALUES])
def test_bad_config_values_are_one_line(overrides, expected):
  with pytest.raises(ValueError) as e:
    config_checks.check_config(tiny_config(**{"total_steps": 4, **overrides}), 8)
  assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_spans_longer_than_a_piece_holds_are_refused():
  """Span corruption of a 32-token row drops 5 tokens: spans of mean 50 would all be 5 long."""
  config = tiny_config("t5_tiny", **{"span_corruption.mean_span_length": 50.0})
  with pytest.raises(ValueError, match=r"mean_span_length=50.0 is longer than the 5 noise tokens "
                                       r"of a 35-token piece.*use at most 5"):
    config_checks.check_config(config, 8)
  config = tiny_config("t5_tiny", **{"span_corruption.mean_span_length": 5.0})
  config_checks.check_config(config, 8)


def test_a_non_number_where_a_number_belongs_is_named():
  config = tiny_config()
  config.model.unlock()
  del config.model["dropout_rate"]
  config.model.dropout_rate = "0.1"
  with pytest.raises(ValueError, match="model.dropout_rate='0.1' must be a number"):
    config_checks.check_ranges(config)


def test_every_numeric_key_has_a_range():
  """A key added to base_config without a range would take any value, NaN included."""
  def numeric(node, prefix=""):
    for key, value in node.items():
      if hasattr(value, "items") and not isinstance(value, dict):
        yield from numeric(value, f"{prefix}{key}.")
      elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield prefix + key
  own_checks = {"eval_batches", "mesh.data", "mesh.fsdp", "mesh.tensor"}   # -1 means more
  assert set(numeric(base_config())) - own_checks == set(all_ranges())
  for spec in all_ranges().values():   # every interval parses
    config_checks.in_interval(1.0, spec[0] if isinstance(spec, tuple) else spec)


def write_config(tmp_path, body):
  path = tmp_path / "cfg.py"
  path.write_text(body)
  return path


CONFIG = f"--config={ROOT}/configs/gpt_tiny.py"
COMMAND_LINES = [
    ([CONFIG, f"--config={ROOT}/configs/bert_tiny.py"], "error: --config is given 2 times"),
    ([CONFIG, "--config", f"{ROOT}/configs/gpt_tiny.py:size=huge"], "--config is given 2 times"),
    (["--config.total_steps=3"], "error: --config.total_steps overrides a key of the config file, "
                                 "but no --config=configs/NAME.py is given"),
    (["--config", f"{ROOT}/configs/gpt_tiny.py", "--config.foo=1"],
     "error: unknown config key foo"),
    ([f"--config={ROOT}/configs"], "is a directory; name a config file in it"),
    ([CONFIG, "--config.logical_axis_rules=[('batch','nope')]"],
     "error: --config.logical_axis_rules is a list, which the command line cannot set"),
    ([CONFIG, "--prompt=caf\udce9"], "error: the argument --prompt=caf\\xe9 is not UTF-8 text"),
    (["--config={tmp}/cfg.py"], "error: config file {tmp}/cfg.py: get_config() returned NoneType, "
                                "not an ml_collections.ConfigDict"),
]


@pytest.mark.parametrize("args,expected", COMMAND_LINES)
def test_bad_command_lines_are_one_line(tmp_path, args, expected):
  write_config(tmp_path, "def get_config():\n  return None\n")
  args = [a.replace("{tmp}", str(tmp_path)) for a in args]
  with pytest.raises(SystemExit) as e:
    cli.parse_flags(["llm.train", *args, "--workdir=/tmp/unused"])
  assert expected.replace("{tmp}", str(tmp_path)) in str(e.value) and "\n" not in str(e.value)


def test_words_after_the_flags_are_one_line():
  with pytest.raises(SystemExit, match=r"^error: unexpected argument 'extra': every value is a "
                                       r"--flag=value \(quote values with spaces"):
    cli.no_arguments(["llm.generate", "extra"])


def test_workdirs_that_are_not_ours_are_refused(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(ValueError, match="workdir .*/file is a file, not a directory"):
    cli.workdir_path(tmp_path / "file")
  (tmp_path / "w").mkdir()
  (tmp_path / "w" / "checkpoints").write_text("")
  with pytest.raises(ValueError, match="holds checkpoints as a file, where a run keeps its "
                                       "checkpoints directory"):
    cli.workdir_path(tmp_path / "w")
  with pytest.raises(FileNotFoundError, match="workdir .*/nope does not exist"):
    cli.workdir_path(tmp_path / "nope", create=False)


def test_files_a_config_names_are_checked(tmp_path):
  with pytest.raises(FileNotFoundError, match="tokenizer.path='.*' is a directory; it names a "
                                              "file"):
    tokenizer_lib.load_tokenizer(tiny_config(tokenizer=dict(kind="sentencepiece", path=str(tmp_path),
                                                       model_type="unigram")), None)
  (tmp_path / "garbage.model").write_bytes(b"not a model")
  with pytest.raises(ValueError, match=r"garbage.model is not a SentencePiece model \(.*\); name "
                                       r"a .model file SentencePiece wrote"):
    tokenizer_lib.load_tokenizer(tiny_config(tokenizer=dict(
        kind="sentencepiece", path=str(tmp_path / "garbage.model"), model_type="unigram")), None)
  with pytest.raises(ValueError, match="training a 5-piece SentencePiece model failed: it must "
                                       r"hold the corpus' \d+ characters"):
    tokenizer_lib.train(["some text to learn from"] * 10, 5, "unigram", tmp_path / "t.model")


def test_a_tokenizer_file_that_does_not_exist_is_named():
  config = tiny_config(**{"tokenizer.path": "/nonexistent/spm.model"})
  with pytest.raises(FileNotFoundError, match="tokenizer.path='/nonexistent/spm.model'"):
    tokenizer_lib.load_tokenizer(config, corpora.prepare_corpus(config))


def test_inits_that_do_not_exist_or_do_not_fit_are_named(tmp_path):
  from llm import transfer
  with pytest.raises(FileNotFoundError, match="init='/nonexistent' does not exist; init is one "
                                              "of our workdirs"):
    transfer.resolve_init(tiny_config(init="/nonexistent"))
  from llm.convert import hf_bert
  with pytest.raises(FileNotFoundError, match="is a file; expected a Hugging Face BERT folder"):
    hf_bert.resolve_model_dir(ROOT / "README.md")


def test_sentinels_decode_as_their_names():
  """T5 outputs hold sentinel ids past the tokenizer's pieces (extra_ids of them, the last id
  first): decoded as <extra_id_K>, not a crash."""
  config = tiny_config("t5_tiny")
  tok = tokenizer_lib.load_tokenizer(config, corpora.prepare_corpus(config))
  top = config.vocab_size + config.extra_ids - 1
  words = tok.encode("the war")
  assert tok.decode([top, *words, top - 2]) == ("<extra_id_0>" + tok.sp.decode(words) +
                                                "<extra_id_2>")


def test_failed_writes_are_described_with_what_to_do():
  assert cli.describe_os_error(OSError(errno.EROFS, os.strerror(errno.EROFS), "/x/evaluate.json")) \
      == f"{os.strerror(errno.EROFS)} [EROFS] (/x/evaluate.json); use a writable directory"
  assert cli.describe_os_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")) \
      == "No such file or directory [ENOENT] (/x)"


def test_a_failed_write_outside_a_save_is_one_line(tmp_path, capfd, monkeypatch):
  """A full disk while metrics.jsonl is written (after step 2 was saved): one line through the
  entry points' wrapper, exit 1, and the saved step is as it was."""
  from llm.training import train_and_evaluate
  real = runlog.MetricWriter.write
  def write(self, step, record):
    if step == 3:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
    real(self, step, record)
  monkeypatch.setattr(runlog.MetricWriter, "write", write)
  monkeypatch.setattr(os, "_exit", lambda status: (_ for _ in ()).throw(SystemExit(status)))
  if not cli.FLAGS.is_parsed():
    cli.FLAGS.mark_as_parsed()
  with pytest.raises(SystemExit) as e:
    cli.run(train_and_evaluate, tiny_config(total_steps=4, checkpoint_every=2), tmp_path,
            needs_config=False)
  assert e.value.code == 1
  err = capfd.readouterr().err
  assert f"error: {os.strerror(errno.ENOSPC)} [ENOSPC] ({tmp_path}/metrics.jsonl); free space " \
      f"and rerun the same command" in err and "Traceback" not in err, err[-2000:]
  assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text()
          .splitlines()] == [1, 2]
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]
