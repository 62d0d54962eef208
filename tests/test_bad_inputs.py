"""The red team's table: bad inputs, each with the one line it must end in (in-process where no
process is needed; the entry points' own runs are in test_cli, test_generate and test_faults).

A row is (input, the words the error must hold). Families: config values (the ranges table, the
named choices and the checks beside them; other experiments' task checks), command lines
(parse_flags: config files and args, --config.KEY=VALUE, the entry points' flags), what the entry
points pass on (workdirs, inits, data files, plans, sweeps, what trains), llm.generate's decoding
flags and --name, running out of memory, and failed writes. The launchers' are in test_launch."""
import errno
import json
import math
import os

import pytest

from llm import cli, config_checks, runlog, transfer, weights
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
    ({"masking": "dynamc"}, "masking='dynamc': expected one of ['static', 'dynamic']"),   # any task
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
    # Named choices (config_checks.choices), checked whatever the objective reads.
    ({"optimizer.decay": "exponential"},
     "optimizer.decay='exponential': expected one of ['cosine', 'linear', 'constant']"),
    ({"corpus": "nope"}, "corpus='nope': expected one of ['aclsum_qa'"),
    ({"corpus": ""}, "corpus='': expected one of"),
    ({"objective": ""}, "objective='': expected one of ['causal_lm'"),
    ({"tokenizer.kind": "bpe"}, "tokenizer.kind='bpe': expected one of ['sentencepiece', "
                                "'wordpiece', 'gguf', 'huggingface']"),
    ({"tokenizer.kind": "wordpiece"}, "tokenizer.kind='wordpiece' reads tokenizer.path, which is "
                                      "empty: set --config.tokenizer.path"),
    ({"tokenizer.kind": "gguf"}, "tokenizer.kind='gguf' reads tokenizer.path, which is empty"),
    ({"on_nonfinite": ""}, "on_nonfinite='': expected one of ['stop', 'skip']"),
    ({"tokenizer.model_type": ""}, "tokenizer.model_type='': expected one of ['unigram'"),
    # The model's own choices and shapes.
    ({"model.family": "bogus"}, "objective='causal_lm' needs a model.family in ['decoder'], not "
                                "'bogus'"),
    ({"objective": "masked_lm"}, "objective='masked_lm' needs a model.family in ['encoder']"),
    ({"model.norm": "middle"}, "model.norm='middle': expected one of ['post', 'pre']"),
    ({"model.norm_kind": "batchnorm"}, "model.norm_kind='batchnorm': expected one of"),
    ({"model.mlp": "swish"}, "model.mlp='swish': expected one of ['geglu', 'gelu'"),
    ({"model.remat": "all"}, "model.remat='all': expected one of"),
    ({"model.dtype": "bf16"}, "model.dtype='bf16': expected one of ['bfloat16', 'float32']"),
    ({"model.num_kv_heads": 3}, "model.num_heads=4 must be a multiple of model.num_kv_heads=3"),
    ({"model.position": "rope", "model.head_dim": 15},
     "model.position='rope' needs an even head dimension, got 15"),
    # Ranges: each key's interval, NaN, inf and negative counts included.
    ({"seq_len": 0}, "seq_len=0 must be >= 2"),
    ({"train_examples": -1}, "train_examples=-1 must be >= 0 (0 = the whole train split)"),
    ({"eval_every": -1}, "eval_every=-1 must be >= 0 (0 = only at the end)"),
    ({"checkpoint_every": -5}, "checkpoint_every=-5 must be >= 0 (0 = only at the end)"),
    ({"stop_at_step": -1}, "stop_at_step=-1 must be >= 0 (0 = never)"),
    ({"nan_at_step": -3}, "nan_at_step=-3 must be >= 0 (0 = never)"),
    ({"eval_batches": -2}, "eval_batches=-2 must be -1 (the whole validation split)"),
    ({"model.relative_max_distance": 0}, "model.relative_max_distance=0 must be >= 1"),
    ({"model.type_vocab_size": -1}, "model.type_vocab_size=-1 must be >= 0"),
    ({"model.num_decoder_layers": -1}, "model.num_decoder_layers=-1 must be >= 0 (0 = "
                                       "num_layers)"),
    ({"model.rope_base": -math.inf}, "model.rope_base=-inf must be finite and > 1"),
    ({"model.layer_norm_eps": math.nan}, "model.layer_norm_eps=nan must be finite and > 0"),
    ({"model.dropout_rate": math.inf}, "model.dropout_rate=inf must be finite and in [0, 1)"),
    ({"optimizer.b1": -0.1}, "optimizer.b1=-0.1 must be in [0, 1)"),
    ({"optimizer.learning_rate": 0.0}, "optimizer.learning_rate=0.0 must be > 0"),
    ({"optimizer.weight_decay": -0.01}, "optimizer.weight_decay=-0.01 must be >= 0"),
    ({"mask_prob": math.nan}, "mask_prob=nan must be finite and in (0, 1)"),
    ({"fim.rate": 1.5}, "fim.rate=1.5 must be in [0, 1]"),
    ({"span_corruption.mean_span_length": 0.5},
     "span_corruption.mean_span_length=0.5 must be >= 1"),
    ({"mixture.weights.sotu": math.nan}, "mixture.weights.sotu=nan must be finite and >= 0"),
    ({"decode.max_new_tokens": 0}, "decode.max_new_tokens=0 must be >= 1"),
    ({"decode.batch_size": 0}, "decode.batch_size=0 must be >= 1"),
    ({"qa.max_query_len": 0}, "qa.max_query_len=0 must be >= 1"),
    ({"qa.max_answer_len": -1}, "qa.max_answer_len=-1 must be >= 1"),
    # Regexes, the mesh and the batch split.
    ({"lora.targets": "["}, "lora.targets='[' is not a valid regex"),
    ({"optimizer.freeze": "*"}, "optimizer.freeze='*' is not a valid regex"),
    ({"optimizer.train_only": "(?P<"}, "optimizer.train_only='(?P<' is not a valid regex"),
    ({"lora.train_also": ")"}, "lora.train_also=')' is not a valid regex"),
    ({"mesh.fsdp": -1}, "mesh: at most one axis may be -1"),
    ({"mesh.tensor": 3}, "needs a multiple of 3 devices, but there are 8"),
    ({"optimizer.grad_accum_steps": 3}, "batch_size=16 must be divisible by the 8 data-parallel "
                                        "shards x 3 accumulation steps = 24"),
    # The tasks' own checks, set on gpt_tiny.
    ({"objective": "seq2seq", "seq2seq.target_len": 40},
     "seq2seq.target_len=40 leaves no room for the input in a decoder row of seq_len=32"),
    ({"objective": "seq2seq", "seq2seq.target_len": 8, "seq2seq.template": "plain"},
     "seq2seq.template='plain' names no field of the examples"),
    ({"objective": "seq2seq", "seq2seq.target_len": 8, "model.prompt_length": 4},
     "seq2seq decodes its predictions, which soft prompts do not support"),
    ({"objective": "seq2seq", "seq2seq.target_len": 8, "decode.max_new_tokens": 200},
     "an input of up to 25 pieces + decode.max_new_tokens=200 exceeds model.max_len=128"),
    ({"objective": "fill_in_middle"}, "extra_ids=0: fill_in_middle needs 3 ids past the "
                                      "tokenizer's"),
]


@pytest.mark.parametrize("overrides,expected", CONFIG_VALUES,
                         ids=[" ".join(f"{k}={v}" for k, v in o.items()) for o, _ in CONFIG_VALUES])
def test_bad_config_values_are_one_line(overrides, expected):
  with pytest.raises(ValueError) as e:
    config_checks.check_config(tiny_config(**{"total_steps": 4, **overrides}), 8)
  assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


# Other experiments' own checks: (config file, overrides, the words).
TASK_VALUES = [
    ("bert_tiny", {"seq_len": 4}, "seq_len=4 with nsp=True leaves no room for a pair: [CLS] A "
                                  "[SEP] B [SEP] needs seq_len >= 5"),
    ("bert_tiny", {"objective": "extractive_qa"}, "seq_len=32 must hold [CLS] question [SEP] "
                                                  "window [SEP]"),
    ("bert_tiny", {"objective": "cloze", "cloze.template": "{text}"},
     "cloze.template='{text}': expected one '{text}' and one '[MASK]'"),
    ("t5_tiny", {"extra_ids": 0}, "extra_ids=0 sentinels are too few for 3 spans"),
    ("t5_tiny", {"masking": "random"}, "masking='random': expected one of"),
]


@pytest.mark.parametrize("name,overrides,expected", TASK_VALUES)
def test_bad_task_values_are_one_line(name, overrides, expected):
  with pytest.raises(ValueError) as e:
    config_checks.check_config(tiny_config(name, **overrides), 8)
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


# Config files a test writes to {tmp}/NAME (directories: None).
BAD_FILES = {
    "cfg.py": b"def get_config():\n  return None\n",
    "nul.py": b"def get_config():\n  return None\x00\n",
    "needs_arg.py": b"def get_config(arg):\n  return arg\n",
    "not_callable.py": b"get_config = 5\n",
    "empty.py": b"",
    "dict.py": b"def get_config():\n  return {'seq_len': 8}\n",
    "imports.py": b"import no_such_module_xyz\n",
    "recursion.py": b"def get_config():\n  return get_config()\n",
    "dir.py": None,
}


def write_files(tmp_path):
  for name, body in BAD_FILES.items():
    if body is None:
      (tmp_path / name).mkdir()
    else:
      (tmp_path / name).write_bytes(body)
  os.symlink(tmp_path / "gone.py", tmp_path / "dangling.py")


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
    # The config file: missing, empty, not a file, not Python, not a config.
    (["--config="], "error: --config needs a config file, e.g. --config=configs/gpt_tiny.py"),
    (["--config", "--workdir=/tmp/x"], "error: --config needs a config file, e.g. "
                                       "--config=configs/gpt_tiny.py (not --workdir=/tmp/x)"),
    (["--config=/nonexistent/cfg.py"], "error: config file /nonexistent/cfg.py does not exist"),
    (["--config={tmp}/dangling.py"], "error: config file {tmp}/dangling.py does not exist"),
    (["--config={tmp}/dir.py"], "error: --config={tmp}/dir.py is a directory"),
    ([f"--config={ROOT}/README.md"], f"error: config file {ROOT}/README.md, line "),
    (["--config={tmp}/nul.py"], "error: config file {tmp}/nul.py: source code string cannot "
                                "contain null bytes"),
    (["--config={tmp}/empty.py"], "error: config file {tmp}/empty.py defines no get_config()"),
    (["--config={tmp}/not_callable.py"], "defines no get_config(); a config file is `def "
                                         "get_config(arg=None)"),
    (["--config={tmp}/dict.py"], "get_config() returned dict, not an ml_collections.ConfigDict"),
    (["--config={tmp}/needs_arg.py"], "error: get_config() in {tmp}/needs_arg.py raised "
                                      "TypeError"),
    (["--config={tmp}/cfg.py:x"], "error: get_config('x') in {tmp}/cfg.py raised TypeError"),
    (["--config={tmp}/imports.py"], "raised ModuleNotFoundError, line 1: No module named "
                                    "'no_such_module_xyz'"),
    (["--config={tmp}/recursion.py"], "raised RecursionError, line 2"),
    # The config file's arg.
    ([f"{CONFIG}:bogus"], "config arg 'bogus': expected one of ['size']"),
    ([f"--config={ROOT}/configs/t5_tiny.py:variant=bogus"], "variant='bogus': expected one of"),
    ([f"--config={ROOT}/configs/fim_tiny.py:rate="], "config arg 'rate=': give each of ['rate'] "
                                                     "at most once, as KEY=VALUE (e.g. rate=0.5)"),
    ([f"--config={ROOT}/configs/finetune_sentiment.py:init"], "config arg 'init': give each of "
                                                              "['init', 'tuning'] at most once"),
    ([f"--config={ROOT}/configs/bert_tiny.py:size=tiny,size=large"],
     "config arg 'size=large': give each of ['size', 'variant'] at most once"),
    ([f"--config={ROOT}/configs/finetune_sentiment.py:tuning=bogus"],
     "config arg tuning='bogus': expected full, lora or prompt"),
    # --config.KEY=VALUE: the key, then the value's type.
    ([CONFIG, "--config.mixture.weights.nope=1"],
     "error: unknown config key mixture.weights.nope; did you mean mixture.weights?"),
    ([CONFIG, "--config.seed.x=1"], "error: unknown config key seed.x; did you mean seed?"),
    ([CONFIG, "--config.logical_axis_rules.0=x"], "unknown config key logical_axis_rules.0"),
    ([CONFIG, "--config.seq_len=1e3"],
     "error: --config.seq_len=1e3: expected a whole number (the config has 128)"),
    ([CONFIG, "--config.batch_size=2.0"], "--config.batch_size=2.0: expected a whole number"),
    ([CONFIG, "--config.seed=nan"], "--config.seed=nan: expected a whole number (the config has "
                                    "0)"),
    ([CONFIG, "--config.eval_batches=all"], "--config.eval_batches=all: expected a whole number"),
    ([CONFIG, "--config.optimizer.learning_rate=abc"],
     "error: --config.optimizer.learning_rate=abc: expected a number (the config has 0.001)"),
    ([CONFIG, "--config.optimizer.eps="], "--config.optimizer.eps=: expected a number"),
    ([CONFIG, "--config.mixture.weights.sotu=lots"],
     "--config.mixture.weights.sotu=lots: expected a number (the config has 0.0)"),
    ([CONFIG, "--config.model.scan_layers=maybe"],
     "error: --config.model.scan_layers=maybe: expected true or false (the config has False)"),
    ([CONFIG, "--config.model.use_bias=yes"], "--config.model.use_bias=yes: expected true or "
                                              "false"),
    ([CONFIG, "--config.tokenizer=foo"], "error: --config.tokenizer=foo: tokenizer is a group of "
                                         "keys (kind, model_type, path); set one of them, e.g. "
                                         "--config.tokenizer.kind=VALUE"),
    ([CONFIG, "--config.mixture.weights=1"], "mixture.weights is a group of keys (aclsum_qa, "
                                             "bbc_news, fortunes, gensim_text, ...)"),
    # The entry points' own flags (absl parses them; the words are ours).
    ([CONFIG, "--distributed=maybe"],
     "error: --distributed=maybe: expected true or false (the default is False)"),
    ([CONFIG, "--verbosity=loud"], "error: --verbosity=loud: expected a whole number (the "
                                   "default is -1)"),
    ([CONFIG, "--no_such_flag=1"], "error: Unknown command line flag 'no_such_flag'"),
]


@pytest.mark.parametrize("args,expected", COMMAND_LINES)
def test_bad_command_lines_are_one_line(tmp_path, args, expected):
  write_files(tmp_path)
  args = [a.replace("{tmp}", str(tmp_path)) for a in args]
  with pytest.raises(SystemExit) as e:
    cli.parse_flags(["llm.train", *args, "--workdir=/tmp/unused"])
  assert expected.replace("{tmp}", str(tmp_path)) in str(e.value) and "\n" not in str(e.value)


def made(tmp, files):
  """A folder tmp/w holding `files` ({path: text or bytes; None: a folder}); returns its path."""
  root = tmp / "w"
  for name, body in {".": None, **files}.items():
    path = root / name
    if body is None:
      path.mkdir(parents=True, exist_ok=True)
    else:
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(body.encode() if isinstance(body, str) else body)
  return root


def init_from(tmp, config_json, **files):
  """resolve_init of a workdir of ours (checkpoints/ and config.json) holding `config_json`."""
  workdir = made(tmp, {"checkpoints": None, "config.json": config_json, **files})
  return transfer.resolve_init(tiny_config(init=str(workdir)))


def dangling(tmp):
  os.symlink(tmp / "gone", tmp / "link")
  return tmp / "link"


def conll(tmp, train):
  return corpora.corpus_builder(tiny_config(corpus="conll", **{
      "data_files.train": train, "data_files.validation": str(made(tmp, {"v.txt": ""}) / "v.txt")}))


def plan(devices, kind):
  from llm import planning
  return planning.plan(tiny_config(), devices, kind)


def sweep(members, only=None):
  from llm import sweeps
  return sweeps.plan(members, tiny_config(), only=only)


def trainable(**optimizer):
  """What would train of a one-kernel model, with `optimizer` settings."""
  import numpy as np
  from llm import optim
  params = {"decoder": {"layer_0": {"mlp": {"wi": {"kernel": np.zeros(2)}}}}}
  return optim.trainable_mask(params, tiny_config(**{f"optimizer.{k}": v
                                                     for k, v in optimizer.items()}))


SOURCE = json.dumps({"vocab_size": 8000, "model": {"family": "decoder"}})
# What the entry points call with a user's paths and values: (id, call(tmp_path), the words).
LIBRARY_CALLS = [
    # --workdir
    ("workdir empty", lambda tmp: cli.workdir_path(""), "--workdir=DIR is required"),
    ("workdir under a file", lambda tmp: cli.workdir_path(made(tmp, {"f": ""}) / "f" / "w"),
     "is not writable (Not a directory); choose another --workdir"),
    ("metrics.jsonl a folder", lambda tmp: cli.workdir_path(made(tmp, {"metrics.jsonl": None})),
     "holds metrics.jsonl as a directory, where a run keeps its metrics.jsonl file"),
    ("tokenizer.model a folder",
     lambda tmp: cli.workdir_path(made(tmp, {"tokenizer.model": None})),
     "holds tokenizer.model as a directory"),
    ("config.json a folder", lambda tmp: cli.workdir_path(made(tmp, {"config.json": None})),
     "holds config.json as a directory"),
    ("tensorboard a file", lambda tmp: cli.workdir_path(made(tmp, {"tensorboard": ""})),
     "holds tensorboard as a file, where a run keeps its tensorboard directory"),
    ("workdir a dangling link", lambda tmp: cli.workdir_path(dangling(tmp)),
     "link is a symbolic link to {tmp}/gone, which does not exist"),
    ("workdir name too long", lambda tmp: cli.workdir_path(tmp / ("x" * 300)),
     "cannot be used (File name too long); choose another --workdir"),
    ("workdir of no user", lambda tmp: cli.workdir_path("~no_such_user_xyz/w"),
     "workdir ~no_such_user_xyz/w cannot be used"),
    # init=
    ("init an empty folder",
     lambda tmp: transfer.resolve_init(tiny_config(init=str(made(tmp, {})))),
     "config.json does not exist; expected a Hugging Face model folder"),
    ("init config.json {}", lambda tmp: init_from(tmp, "{}"),
     "its config.json has no model or vocab_size, so it is not a run's config"),
    ("init config.json a list", lambda tmp: init_from(tmp, "[1]"), "has no model or vocab_size"),
    ("init config.json not UTF-8", lambda tmp: init_from(tmp, b"\xff\xfe"),
     "its config.json is not readable JSON ('utf-8' codec can't decode"),
    ("init without vocab_size", lambda tmp: init_from(tmp, json.dumps({"model": {}})),
     "its config.json has no vocab_size"),
    ("init without a tokenizer", lambda tmp: init_from(tmp, SOURCE),
     "holds no tokenizer.model and its config.json names no tokenizer.path"),
    ("init not GGUF", lambda tmp: transfer.resolve_init(tiny_config(
        init=str(made(tmp, {"x.gguf": "text"}) / "x.gguf"))), "x.gguf is not a readable GGUF"),
    ("export a folder without config.json",
     lambda tmp: weights.workdir_params(made(tmp, {"checkpoints": None}), None),
     "workdir {tmp}/w holds no config.json, so it is not a trained workdir of ours"),
    # data_files= and tokenizer.path=
    ("data_files.train missing", lambda tmp: conll(tmp, "/nonexistent/train.txt"),
     "data_files.train='/nonexistent/train.txt' does not exist"),
    ("data_files.train a folder", lambda tmp: conll(tmp, str(tmp)),
     "data_files.train='{tmp}' is a directory; it names a file"),
    ("no data_files", lambda tmp: corpora.corpus_builder(tiny_config(corpus="conll")),
     "corpus='conll' reads your files: set --config.data_files.train=PATH"),
    ("gguf tokenizer not GGUF", lambda tmp: tokenizer_lib.load_tokenizer(tiny_config(**{
        "tokenizer.kind": "gguf", "tokenizer.path": str(made(tmp, {"t.gguf": "x"}) / "t.gguf")}),
        None), "t.gguf is not a readable GGUF file"),
    # llm.plan
    ("plan --devices=0", lambda tmp: plan(0, ""), "--devices=N (how many chips the run would "
                                                   "use) is required and must be positive"),
    ("plan --device_kind=v9", lambda tmp: plan(8, "v9"), "--device_kind='v9': expected one of"),
    ("plan in this process", lambda tmp: plan(4, ""), "the planner sees 8 devices, not "
                                                       "--devices=4: run it as python -m llm.plan"),
    # llm.sweep: each member is checked as its run would be, before any runs
    ("sweep --member=-1", lambda tmp: sweep([{"seed": 1}, {"seed": 2}], only=-1),
     "--member=-1: the sweep has members 0 to 1"),
    ("sweep member key", lambda tmp: sweep([{"sed": 1}]),
     "member 0 (sed=1): unknown config key sed; did you mean seed?"),
    ("sweep member decay", lambda tmp: sweep([{"optimizer.decay": "exp"}]),
     "member 0 (optimizer.decay=exp): optimizer.decay='exp': expected one of"),
    ("sweep member corpus", lambda tmp: sweep([{"corpus": "nope"}]),
     "member 0 (corpus=nope): corpus='nope': expected one of"),
    # What trains
    ("freeze everything", lambda tmp: trainable(freeze=".*"),
     "no parameter would train with optimizer.freeze='.*'"),
    ("train_only nothing", lambda tmp: trainable(train_only="nomatch"),
     "no parameter would train with optimizer.train_only='nomatch'"),
]


@pytest.mark.parametrize("call,expected", [row[1:] for row in LIBRARY_CALLS],
                         ids=[row[0] for row in LIBRARY_CALLS])
def test_bad_paths_and_values_the_entry_points_pass_on_are_one_line(tmp_path, call, expected):
  with pytest.raises((ValueError, OSError)) as e:
    call(tmp_path)
  expected = expected.replace("{tmp}", str(tmp_path))
  assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


# llm.generate's decoding flags (decoding.check, before anything loads).
DECODING_FLAGS = [
    ({"max_new_tokens": 0}, "--max_new_tokens=0 must be positive"),
    ({"temperature": -0.5}, "--temperature=-0.5 must be a number >= 0 (0 = greedy)"),
    ({"temperature": math.nan}, "--temperature=nan must be a number >= 0"),
    ({"temperature": math.inf}, "--temperature=inf must be a number >= 0"),
    ({"length_penalty": math.inf}, "--length_penalty=inf must be a finite number"),
    ({"top_k": -1}, "--top_k=-1 must be >= 0 (0 = no limit)"),
    ({"top_p": 1.5}, "--top_p=1.5 must be in (0, 1]"),
    ({"top_p": math.nan}, "--top_p=nan must be in (0, 1]"),
    ({"num_beams": 0}, "--num_beams=0 must be >= 1"),
    ({"top_k": 5}, "--top_k/--top_p filter sampling, but --temperature=0 is greedy"),
    ({"seed": -1}, "--sample_seed=-1 must be in [0, 4294967296)"),
    ({"seed": 2**64}, "--sample_seed=18446744073709551616 must be in [0, 4294967296)"),
]


@pytest.mark.parametrize("settings,expected", DECODING_FLAGS)
def test_bad_decoding_flags_are_one_line(settings, expected):
  from llm import decoding
  with pytest.raises(ValueError) as e:
    decoding.check(decoding.Settings(**settings))
  assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("name", ["", "a b", "../x", ".hidden", "-x", "caf\xe9", "x" * 201])
def test_result_names_that_cannot_name_a_file_are_refused(name):
  """llm.evaluate/llm.generate --name: checked before anything runs (a name too long for the
  file system would fail at the end, after the whole evaluation)."""
  with pytest.raises(ValueError, match=r"it becomes part of a file name \(evaluate_<name>.json\); "
                                       r"use letters, digits and . _ - .*at most 200"):
    cli.check_result_name(name)


def test_a_config_file_with_a_byte_order_mark_loads(tmp_path):
  """Editors on Windows start UTF-8 files with a BOM, which Python itself reads."""
  path = tmp_path / "bom.py"
  path.write_bytes(b"\xef\xbb\xbf" + (ROOT / "configs" / "gpt_tiny.py").read_bytes())
  assert cli.load_config(path).objective == "causal_lm"


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
    tokenizer_lib.load_tokenizer(tiny_config(tokenizer=dict(
        kind="sentencepiece", path=str(tmp_path), model_type="unigram")), None)
  (tmp_path / "garbage.model").write_bytes(b"not a model")
  with pytest.raises(ValueError, match=r"garbage.model is not a SentencePiece model \(.*\); name "
                                       r"a .model file SentencePiece wrote"):
    tokenizer_lib.load_tokenizer(tiny_config(tokenizer=dict(
        kind="sentencepiece", path=str(tmp_path / "garbage.model"), model_type="unigram")), None)
  with pytest.raises(ValueError, match="training a 5-piece SentencePiece model failed: it must "
                                       r"hold the corpus' \d+ characters"):
    tokenizer_lib.train(["some text to learn from"] * 10, 5, "unigram", tmp_path / "t.model")
  with pytest.raises(ValueError, match="failed: no line of the text is shorter than "
                                       "SentencePiece's limit of 4,192 bytes; the corpus needs "
                                       "line breaks"):
    tokenizer_lib.train(["word " * 1000] * 3, 50, "unigram", tmp_path / "t.model")


def test_a_tokenizer_file_that_does_not_exist_is_named():
  config = tiny_config(**{"tokenizer.path": "/nonexistent/spm.model"})
  with pytest.raises(FileNotFoundError, match="tokenizer.path='/nonexistent/spm.model'"):
    tokenizer_lib.load_tokenizer(config, corpora.prepare_corpus(config))


def test_inits_that_do_not_exist_or_do_not_fit_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="init='/nonexistent' does not exist; init is one "
                                              "of our workdirs"):
    transfer.resolve_init(tiny_config(init="/nonexistent"))
  from llm.convert import hf_bert
  with pytest.raises(FileNotFoundError, match="is a file; expected a Hugging Face model folder"):
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


@pytest.mark.parametrize("error", [
    MemoryError("Unable to allocate 8.00 TiB for an array with shape (1048576, 1048576)"),
    "RESOURCE_EXHAUSTED: Out of memory allocating 4398046511104 bytes."])
def test_running_out_of_memory_is_one_line(capfd, monkeypatch, error):
  """A batch or model too large for the host (numpy) or the device (XLA): one line naming what
  to shrink, exit 1."""
  import jax
  error = jax.errors.JaxRuntimeError(error) if isinstance(error, str) else error
  monkeypatch.setattr(os, "_exit", lambda status: (_ for _ in ()).throw(SystemExit(status)))
  if not cli.FLAGS.is_parsed():
    cli.FLAGS.mark_as_parsed()
  def allocate():
    raise error
  with pytest.raises(SystemExit) as e:
    cli.run(allocate, needs_config=False)
  assert e.value.code == 1
  err = capfd.readouterr().err
  assert err == f"error: out of memory ({str(error).splitlines()[0]}); use a smaller batch_size, " \
      f"seq_len or model (python -m llm.plan shows what a config needs per device)\n", err
  with pytest.raises(RuntimeError, match="INTERNAL"):   # not a user's mistake: the traceback
    cli.run(lambda: (_ for _ in ()).throw(RuntimeError("INTERNAL: a bug")), needs_config=False)
