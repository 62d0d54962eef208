"""Defaults every experiment config starts from (configs/*.py override what they need)."""
import copy

import ml_collections

from llm.data.mixture import MIXABLE
from llm.models import heads, presets
from llm.models.config import ModelConfig

# The task heads a fine-tuning run adds (+ BERT's pooler): what LoRA and prompt tuning train.
TASK_HEADS = rf"^(pooler|{'|'.join(f'{head}_head' for head in heads.TASK_HEADS)})/"


def base_config():
  c = ml_collections.ConfigDict()
  c.objective = "causal_lm"
  c.corpus = "gensim_text"        # a builder of llm/data/builders, or "mixture" of them:
  c.mixture = dict(weights={name: 0.0 for name in MIXABLE})   # shares of the rows; 0 = left out
  c.data_dir = ""                 # "" = $LLM_DATA_DIR or ~/.cache/llm (TFDS data + tokenizers)
  # Your own files, for corpus="conll" (CoNLL-2003 NER) or "squad" (SQuAD v1.1 JSON).
  c.data_files = dict(train="", validation="", test="")
  # The corpus' class names, filled in when the config is resolved for a task that reads them.
  c.label_names = ()
  c.vocab_size = 8000             # the tokenizer's pieces
  c.extra_ids = 0                 # ids past the tokenizer's, at the end of the model vocabulary
  # kind: sentencepiece (path "" = train one on the corpus and cache it) | wordpiece (path = a
  # Hugging Face BERT folder). A workdir's own tokenizer is in <workdir>/tokenizer.*
  c.tokenizer = dict(kind="sentencepiece", path="", model_type="unigram")
  # Fine-tuning start point: "" = from scratch; a workdir of ours; a Hugging Face BERT folder
  # (config.json + model.safetensors); or "minilm" (all-MiniLM-L6-v2, shipped by a pip package).
  c.init = ""
  c.seq_len = 128
  c.train_examples = 0           # > 0: a fixed sample of the train split (e.g. 100 labels)
  # Each task's own keys, declared in its module (llm/tasks/<objective>.py, Task.config): every
  # config holds every task's, so a config file may set them whatever its objective.
  from llm import tasks   # the task modules import the data layer: only when a config is built
  for task in tasks.all_tasks():
    for key, value in task.config.items():
      c[key] = copy.deepcopy(value)

  c.seed = 0
  c.total_steps = 1000
  c.batch_size = 32               # global, over all processes and devices
  # The global batch is built from this many independent streams of the training documents,
  # side by side; each process builds only those holding rows its devices take. 1 = every
  # process builds the whole batch. On many hosts, a multiple of the process count.
  c.input_shards = 1
  c.log_every = 50
  c.eval_every = 500
  c.eval_batches = -1             # -1 = the whole validation split
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.stop_at_step = 0              # > 0: save and exit after this step, as a preempted job would
  # A step whose loss or gradient norm is not finite is never applied; then `stop` ends the run
  # naming it, `skip` goes on, up to max_nonfinite_skips such steps. Nothing non-finite is saved.
  c.on_nonfinite = "stop"
  c.max_nonfinite_skips = 10
  c.nan_at_step = 0               # testing: make this step's loss NaN, as a diverging run would
  # Resuming a checkpoint saved with the other model.scan_layers converts it only when asked.
  c.convert_layout = False
  # Resuming with other data or optimisation settings (see compatibility.stream_keys) is refused
  # unless this is set; the differences are then logged and each config kept.
  c.allow_changed_config = False

  # ModelConfig's settings and defaults (llm/models/config.py says what each means);
  # models/presets.py names the values that make a BERT, GPT-2, Llama or original Transformer.
  c.model = ModelConfig.defaults()
  c.optimizer = dict(
      learning_rate=1e-3, warmup_steps=100, decay="cosine", end_lr_ratio=0.1, b1=0.9, b2=0.95,
      eps=1e-8, weight_decay=0.1, no_decay=r"(bias|scale|embedding)$", clip_norm=1.0,
      grad_accum_steps=1, freeze="", train_only="")
  # freeze: regex of parameter paths not to train; train_only: regex of the only ones to train.
  # LoRA (rank 0 = off): adapters on the kernels matching `targets`; only they and the
  # parameters matching `train_also` (a new task head) train.
  c.lora = dict(rank=0, alpha=16.0, targets=r"attention/(query|value)/kernel",
                train_also=TASK_HEADS)

  c.mesh = dict(data=-1, fsdp=1, tensor=1)
  # Logical axis -> mesh axes, highest priority first. A mesh axis already used by an earlier
  # dimension of the same array is skipped, so activations put `batch` on data+fsdp while
  # parameters shard `embed` over fsdp (ZeRO-3 style) and heads/mlp/vocab over tensor (Megatron).
  c.logical_axis_rules = [
      ("batch", ("data", "fsdp")),
      ("vocab", "tensor"),
      ("heads", "tensor"),
      ("kv_heads", "tensor"),
      ("mlp", "tensor"),
      ("embed", "fsdp"),
      ("length", None),
      ("kv", None),
      ("layers", None),   # the stacked axis of scanned layers
  ]
  return c


# The values each numeric key may take, as intervals (and what a boundary means, where it says
# something); config_checks.check_config refuses anything outside, NaN included, before a run
# starts. The tasks' own keys have theirs in their modules (Task.ranges; all_ranges() joins
# them). eval_batches and mesh.* take -1 as well and are checked on their own.
RANGES = {
    "vocab_size": "[1, inf)", "extra_ids": "[0, inf)", "seq_len": "[2, inf)",
    "seed": "[0, 4294967296)", "total_steps": "[1, inf)", "batch_size": "[1, inf)",
    "input_shards": "[1, inf)", "train_examples": ("[0, inf)", "0 = the whole train split"),
    "log_every": ("[0, inf)", "0 = only at the end"),
    "eval_every": ("[0, inf)", "0 = only at the end"),
    "checkpoint_every": ("[0, inf)", "0 = only at the end"),
    "keep_checkpoints": ("[1, inf)", "how many of the newest checkpoints to keep; 0 would keep "
                                     "none"),
    "stop_at_step": ("[0, inf)", "0 = never"), "max_nonfinite_skips": "[0, inf)",
    "nan_at_step": ("[0, inf)", "0 = never"),
    "model.num_layers": "[1, inf)", "model.num_decoder_layers": ("[0, inf)", "0 = num_layers"),
    "model.embed_dim": "[1, inf)", "model.num_heads": "[1, inf)",
    "model.num_kv_heads": ("[0, inf)", "0 = num_heads"), "model.head_dim": ("[0, inf)",
                                                                      "0 = embed_dim / num_heads"),
    "model.mlp_dim": "[1, inf)", "model.max_len": "[1, inf)", "model.rope_base": "(1, inf)",
    "model.relative_buckets": "[2, inf)", "model.relative_max_distance": "[1, inf)",
    "model.layer_norm_eps": "(0, inf)", "model.dropout_rate": "[0, 1)",
    "model.attention_dropout_rate": "[0, 1)", "model.type_vocab_size": "[0, inf)",
    "model.num_classes": ("[0, inf)", "0 = the corpus' count"), "model.prompt_length": "[0, inf)",
    "model.unused_vocab": "[0, inf)",
    "optimizer.learning_rate": "(0, inf)", "optimizer.warmup_steps": "[0, inf)",
    "optimizer.end_lr_ratio": "[0, 1]", "optimizer.b1": "[0, 1)", "optimizer.b2": "[0, 1)",
    "optimizer.eps": "(0, inf)", "optimizer.weight_decay": "[0, inf)",
    "optimizer.clip_norm": ("[0, inf)", "0 = no clipping"),
    "optimizer.grad_accum_steps": ("[1, inf)", "1 = no accumulation"),
    "lora.rank": ("[0, inf)", "0 = no LoRA"), "lora.alpha": "(0, inf)",
    **{f"mixture.weights.{name}": ("[0, inf)", "0 = not in the mixture") for name in MIXABLE},
}


def all_ranges():
  """RANGES and every task's own."""
  from llm import tasks
  return {**RANGES, **{k: v for task in tasks.all_tasks() for k, v in task.ranges.items()}}


def from_saved(values):
  """A ConfigDict from a saved config.json, with defaults for keys added since it was written."""
  config = base_config()
  def fill(node, saved):
    for key, value in saved.items():
      if isinstance(value, dict) and isinstance(node.get(key), ml_collections.ConfigDict):
        fill(node[key], value)
      else:
        node[key] = value
  fill(config, values)
  return config


def classification_config(corpus, arg, total_steps, seq_len=128, objective="classification"):
  """Fine-tuning recipe for sentence classification on `corpus` (BERT: pooled [CLS] -> classes),
  token classification with objective="tagging" (a tag per word), or extractive QA with
  objective="extractive_qa" (start/end logits per piece).

  arg `init=minilm` (default; Hugging Face all-MiniLM-L6-v2), `init=scratch` (a tiny BERT with a
  SentencePiece vocabulary trained on the task's train split) or `init=PATH` (one of our
  workdirs, e.g. a bert_tiny pretraining run, or a Hugging Face BERT folder); and
  `tuning=full` (default: every parameter), `tuning=lora` (rank-8 adapters + the head) or
  `tuning=prompt` (20 soft prompt vectors + the head, encoder frozen).
  """
  args = parse_arg(arg, init="minilm", tuning="full")
  c = base_config()
  c.objective = objective
  c.corpus = corpus
  c.init = "" if args["init"] == "scratch" else args["init"]
  c.seq_len = seq_len
  # Warmup, evaluation and checkpoint intervals follow total_steps, also when a command line
  # overrides it (ml_collections references; overriding one of them directly wins).
  c.total_steps = total_steps
  steps = c.get_ref("total_steps")
  # The shape below is used from scratch; a pretrained init replaces it with the source's.
  c.model.update(presets.BERT)
  c.model.update(num_layers=4, embed_dim=256, num_heads=4, mlp_dim=1024, max_len=seq_len,
                 num_classes=0)   # 0 = the corpus' number of labels
  # BERT's fine-tuning recipe; from scratch a 10x larger peak rate trains far better.
  c.optimizer.update(learning_rate=5e-4 if args["init"] == "scratch" else 5e-5,
                     warmup_steps=steps // 10, decay="linear", end_lr_ratio=0.0,
                     b2=0.999, eps=1e-6, weight_decay=0.01)
  if args["tuning"] == "lora":     # low-rank adapters on query/value + the head
    c.lora.update(rank=8, alpha=16.0, train_also=TASK_HEADS)
    c.optimizer.learning_rate = 1e-3
  elif args["tuning"] == "prompt":   # 20 soft prompt vectors + the head; the encoder is frozen
    c.model.prompt_length = 20
    c.model.max_len = seq_len + 20
    c.optimizer.train_only = r"/prompt$|" + TASK_HEADS
    c.optimizer.learning_rate = 3e-3
  elif args["tuning"] != "full":
    raise ValueError(f"config arg tuning={args['tuning']!r}: expected full, lora or prompt")
  c.batch_size = 32
  c.log_every = 25
  c.eval_every = steps // 2
  c.checkpoint_every = steps // 2
  return c


def tiny_t5(c, init=""):
  """`c` with the seq2seq configs' own model: a T5.1.1 encoder-decoder of 4 + 4 layers of 256
  (8.9 M parameters with a 2,000-piece vocabulary), from scratch or from `init` (whose shapes
  then replace these)."""
  c.init = init
  c.model.update(presets.T5)
  c.model.update(num_layers=4, num_decoder_layers=4, embed_dim=256, num_heads=4, head_dim=64,
                 mlp_dim=768, max_len=512, dropout_rate=0.1)
  return c


def smollm2_seq2seq(c, instruction, args, seq_len=384, total_steps=100):
  """`c` (a seq2seq config) as SmolLM2-135M-Instruct, a decoder reading `instruction` and the
  example's source as the user turn of its ChatML template and writing the target as its reply:
  evaluate zero-shot, or fine-tune (args["tuning"]: full, or lora). `instruction` may name the
  example's fields, e.g. "Summarize the {aspect} of this paper in one sentence."."""
  if args.get("init"):
    raise ValueError("config arg init: model=smollm2 starts from the SmolLM2 GGUF file; set "
                     "--config.init=PATH for another Llama GGUF")
  c.init = "smollm2"
  c.model.update(presets.LLAMA)   # the init replaces the shapes with the checkpoint's
  c.seq2seq.template = (f"<|im_start|>user\n{instruction}\n\n{{source}}<|im_end|>\n"
                        f"<|im_start|>assistant\n")
  c.decode.update(num_beams=1, batch_size=8)   # greedy: 135M parameters on a CPU
  c.seq_len = seq_len
  c.batch_size = 8
  c.total_steps = total_steps
  c.optimizer.update(learning_rate=3e-5, warmup_steps=total_steps // 10, decay="cosine",
                     weight_decay=0.0, b2=0.999)
  if args.get("tuning", "full") == "lora":
    c.lora.update(rank=8, alpha=16.0, train_also="")
    c.optimizer.learning_rate = 1e-3
  elif args.get("tuning", "full") != "full":
    raise ValueError(f"config arg tuning={args['tuning']!r}: expected full or lora")
  return c


def parse_arg(arg, **defaults):
  """'size=base,foo=1' -> dict with defaults filled in (big_vision-style config args)."""
  out, seen = dict(defaults), set()
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in defaults:
      raise ValueError(f"config arg {key!r}: expected one of {sorted(defaults)}")
    if not value or key in seen:   # `init` alone, `init=`, or a key given twice
      raise ValueError(f"config arg {item!r}: give each of {sorted(defaults)} at most once, as "
                       f"KEY=VALUE (e.g. {key}={defaults[key] or 'VALUE'})")
    out[key] = value
    seen.add(key)
  return out
