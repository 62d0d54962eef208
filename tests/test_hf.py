"""Hugging Face BERT interop checked against transformers itself: imported MiniLM == BertModel,
our WordPiece ids == HF's tokenizers, exported models == BertFor* models, exact round trip."""
import json
import os
import re
import subprocess
import sys
import unicodedata

import flax.linen as nn
import jax
import numpy as np
import pytest

from llm import config_checks, exports, interop, transfer
from llm.base_config import base_config
from llm.convert import hf_bert
from llm.data.wordpiece import WordPieceTokenizer
from llm.models import build_model, heads as heads_lib, model_config, presets

from helpers import ROOT, load_config, tiny_model_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # local folders only
SENTENCES = ["The quick brown fox jumps over the lazy dog.",
             "Héllo, Wörld! BERT's WordPiece splits unaffable words.",
             "Short one.",
             "東京 is a city; e-mail me at nobody@example.com 🤗"]


@pytest.fixture(scope="module")
def minilm():
  try:
    return hf_bert.resolve_model_dir("minilm")
  except FileNotFoundError as e:
    pytest.skip(str(e))


def padded(rows):
  tokens = np.zeros((len(rows), max(map(len, rows))), np.int32)
  for out, row in zip(tokens, rows):
    out[:len(row)] = row
  return tokens


def test_minilm_hidden_states_and_pooler_match_transformers(minilm):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  tok = WordPieceTokenizer(minilm)
  tokens = padded([[tok.cls_id, *tok.encode(s), tok.sep_id] for s in SENTENCES])
  assert (tokens == 0).any()   # the batch has padding
  config = interop.bert_config(minilm)
  params = hf_bert.load_params(minilm)
  hidden = build_model(config, heads=()).apply({"params": params}, {"inputs": tokens})["hidden"]
  pooled = heads_lib.Pooler(model_config(config)).apply({"params": params["pooler"]}, hidden)

  reference = transformers.BertModel.from_pretrained(minilm, dtype=torch.float32).eval()
  with torch.no_grad():
    out = reference(input_ids=torch.from_numpy(tokens).long(),
                    attention_mask=torch.from_numpy(tokens != 0).long(),
                    token_type_ids=torch.zeros(tokens.shape, dtype=torch.long))
  real = tokens != 0   # padding positions are not compared
  assert np.abs(np.asarray(hidden) - out.last_hidden_state.numpy())[real].max() <= 1e-4
  assert np.abs(np.asarray(pooled) - out.pooler_output.numpy()).max() <= 1e-4


def test_wordpiece_ids_and_offsets_match_transformers(minilm, tmp_path):
  transformers = pytest.importorskip("transformers")
  fast = transformers.AutoTokenizer.from_pretrained(minilm)
  legacy = transformers.BertTokenizerLegacy(str(minilm / "vocab.txt"))   # pure-Python WordPiece
  tok = WordPieceTokenizer(minilm)
  (tmp_path / "vocab.txt").write_bytes((minilm / "vocab.txt").read_bytes())
  from_vocab = WordPieceTokenizer(tmp_path)   # the vocab.txt fallback
  from_json = WordPieceTokenizer(minilm / "tokenizer.json")
  assert tok.special_ids == (0, 100, 101, 102, 103) and tok.vocab_size == 30522
  for text in SENTENCES:
    ids, offsets = tok.encode_with_offsets(text)
    assert ids == tok.encode(text) == from_vocab.encode(text) == from_json.encode(text)
    assert ids == fast(text, add_special_tokens=False)["input_ids"]
    assert ids == legacy.encode(text, add_special_tokens=False)
    for i, (start, end) in zip(ids, offsets):
      piece = tok.tok.id_to_token(i)
      if piece != "[UNK]":   # uncased: lowercase, accents stripped
        plain = "".join(c for c in unicodedata.normalize("NFD", text[start:end].lower())
                        if unicodedata.category(c) != "Mn")
        assert plain == piece.removeprefix("##"), (text, piece, text[start:end])
  assert tok.decode(tok.encode(SENTENCES[0]) + [0, 0]) == SENTENCES[0].lower()


def small_bert(num_classes=3):
  return tiny_model_config(presets.BERT, 300, 32, embed_dim=64, mlp_dim=128,
                           num_classes=num_classes)


# A padded batch with both token types; ids are arbitrary in a random model.
TOKENS = padded([[7, 8, 9, 10, 11, 12], [13, 14, 15]])
TOKEN_TYPES = np.array([[0, 0, 0, 1, 1, 1], [0, 1, 1, 0, 0, 0]], np.int32)


def random_params(model, seed=0):
  # Random values everywhere (LayerNorm scales and biases too): an all-zero bias maps anywhere.
  shapes = nn.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), {"inputs": TOKENS}))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape).astype(np.float32), shapes["params"])


def torch_inputs(torch):
  return dict(input_ids=torch.from_numpy(TOKENS).long(),
              attention_mask=torch.from_numpy(TOKENS != 0).long(),
              token_type_ids=torch.from_numpy(TOKEN_TYPES).long())


def assert_same_params(loaded, params):
  assert jax.tree.structure(loaded) == jax.tree.structure(params)
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, loaded, params)))


def test_export_round_trip_matches_transformers(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  config = small_bert()
  heads = ("mlm", "nsp", "classify")
  model = build_model(config, heads)
  params = random_params(model)
  out_dir = hf_bert.export(params, model_config(config), heads, tmp_path / "bert",
                           label_names=["neg", "neu", "pos"],
                           architecture="BertForSequenceClassification")
  hf_config = json.loads((out_dir / "config.json").read_text())
  assert hf_config["architectures"] == ["BertForSequenceClassification"]
  mode = lambda name: (out_dir / name).stat().st_mode & 0o777
  assert mode("model.safetensors") == mode("config.json")   # not safetensors' private 0600
  assert hf_config["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}

  assert_same_params(hf_bert.load_params(out_dir), params)
  overrides = hf_bert.model_overrides(out_dir)
  assert overrides["vocab_size"] == 300
  assert all(config.model[k] == v for k, v in overrides["model"].items())

  ours = model.apply({"params": params}, {"inputs": TOKENS, "token_types": TOKEN_TYPES})
  inputs = torch_inputs(torch)
  real = TOKENS != 0
  with torch.no_grad():
    load = lambda cls: cls.from_pretrained(out_dir, dtype=torch.float32).eval()
    base = load(transformers.BertModel)(**inputs)
    classify = load(transformers.BertForSequenceClassification)(**inputs).logits
    pretrain = load(transformers.BertForPreTraining)(**inputs)
  diffs = {
      "hidden": np.abs(ours["hidden"] - base.last_hidden_state.numpy())[real].max(),
      "classify": np.abs(ours["classify"] - classify.numpy()).max(),
      "mlm": np.abs(ours["mlm"] - pretrain.prediction_logits.numpy())[real].max(),
      "nsp": np.abs(ours["nsp"] - pretrain.seq_relationship_logits.numpy()).max()}
  assert max(diffs.values()) <= 1e-4, diffs


@pytest.mark.parametrize("head", ["tag", "span"])
def test_token_heads_export_to_transformers_and_back(head, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  config = small_bert(num_classes=5)
  model = build_model(config, (head,))
  params = random_params(model, seed=1)
  assert "pooler" not in params   # as in BertFor{Token,Question}*: add_pooling_layer=False
  names = ["O", "B-x", "I-x", "B-y", "I-y"] if head == "tag" else None
  out_dir = hf_bert.export(params, model_config(config), (head,), tmp_path / head,
                           label_names=names)
  assert_same_params(hf_bert.load_params(out_dir), params)

  cls = {"tag": transformers.BertForTokenClassification,
         "span": transformers.BertForQuestionAnswering}[head]
  reference, info = cls.from_pretrained(out_dir, dtype=torch.float32, output_loading_info=True)
  assert not any(info.values()), info   # no missing, unexpected or mismatched tensors
  if head == "tag":
    assert reference.config.id2label == dict(enumerate(names))
  with torch.no_grad():
    theirs = reference.eval()(**torch_inputs(torch))
  ours = model.apply({"params": params}, {"inputs": TOKENS, "token_types": TOKEN_TYPES})
  pairs = ([(ours["tag"], theirs.logits)] if head == "tag" else
           [(ours["span_start"], theirs.start_logits), (ours["span_end"], theirs.end_logits)])
  real = TOKENS != 0   # padding positions are not compared
  for mine, other in pairs:
    assert mine.shape == tuple(other.shape)
    assert np.abs(np.asarray(mine) - other.numpy())[real].max() <= 1e-5


def test_imported_task_heads_follow_the_architecture(tmp_path):
  tag = small_bert(num_classes=5)
  tag_params = random_params(build_model(tag, ("tag",)))
  tag_dir = hf_bert.export(tag_params, model_config(tag), ("tag",), tmp_path / "tag")
  # The same 'classifier' tensor is a sequence classifier's head when config.json says so.
  hf_config = json.loads((tag_dir / "config.json").read_text())
  hf_config["architectures"] = ["BertForSequenceClassification"]
  (tag_dir / "config.json").write_text(json.dumps(hf_config))
  as_classify = hf_bert.load_params(tag_dir)
  assert "tag_head" not in as_classify
  np.testing.assert_array_equal(as_classify["classify_head"]["out"]["kernel"],
                                tag_params["tag_head"]["out"]["kernel"])
  hf_config["architectures"] = ["BertModel"]   # a bare encoder: no task head is loaded
  (tag_dir / "config.json").write_text(json.dumps(hf_config))
  assert not set(hf_bert.TASK_HEADS) & set(hf_bert.load_params(tag_dir))

  # Fine-tuning from an exported QA model: span_head is loaded, a tag head of any size is fresh.
  span = small_bert()
  span_params = random_params(build_model(span, ("span",)))
  span_dir = hf_bert.export(span_params, model_config(span), ("span",), tmp_path / "span")
  target = small_bert(num_classes=4)
  target.init = str(span_dir)
  fresh = build_model(target, ("tag", "span")).init(jax.random.PRNGKey(0),
                                                    {"inputs": TOKENS})["params"]
  merged = transfer.load_pretrained(target, nn.unbox(fresh), mesh=None)
  assert_same_params(merged["span_head"], span_params["span_head"])
  assert_same_params(merged["tag_head"], nn.unbox(fresh)["tag_head"])

  # A token classifier with other labels than the new run's is a shape error, like classify's.
  hf_config["architectures"] = ["BertForTokenClassification"]
  (tag_dir / "config.json").write_text(json.dumps(hf_config))
  target.init = str(tag_dir)
  with pytest.raises(ValueError, match=r"^init: tag_head/out/(bias|kernel) has shape .* in the "
                     r"source"):
    transfer.load_pretrained(target, nn.unbox(fresh), mesh=None)


def test_label_names_come_from_the_corpus_once_when_the_config_is_resolved(tmp_path):
  """What an export names its classes with (the run's config.json holds them), and what cloze
  verbalizes and predictions files name."""
  config = load_config("finetune_ner", "init=scratch", data_dir=str(tmp_path))
  config_checks.resolve_config(config, 8)
  assert len(config.label_names) == 21 and config.label_names[-1] == "O"
  assert "B-person" in config.label_names and config.model.num_classes == 21
  config = load_config("finetune_topic", "init=scratch", data_dir=str(tmp_path))
  config_checks.resolve_config(config, 8)
  assert config.label_names == ("business", "entertainment", "politics", "sports", "tech")
  config = load_config("finetune_qa", "init=scratch", data_dir=str(tmp_path))
  config_checks.resolve_config(config, 8)
  assert config.label_names == ()   # no classes to name
  assert not any(tmp_path.iterdir())   # the corpus was not built


def test_compare_cli_reports_a_small_difference(minilm):
  pytest.importorskip("transformers")
  proc = subprocess.run(
      [sys.executable, "-m", "llm.hf", "compare", "--model_dir=minilm", f"--text={SENTENCES[0]}",
       f"--text={SENTENCES[2]}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  key, _, value = proc.stdout.strip().splitlines()[-1].partition("=")
  assert key == "max_abs_diff" and float(value) <= 1e-4, proc.stdout


def test_bad_model_folders(tmp_path):
  with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope" / "config.json"))):
    hf_bert.load_params(tmp_path / "nope")
  (tmp_path / "model.safetensors").write_bytes(b"")
  for bad in ({"model_type": "gpt2"}, {"model_type": "bert", "hidden_act": "relu"}):
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'config.json'} has")):
      hf_bert.model_overrides(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
  with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'model.safetensors'} could not")):
    hf_bert.load_params(tmp_path)   # an empty file
  (tmp_path / "vocab.txt").write_text("[UNK]\n[PAD]\n[CLS]\n[SEP]\n[MASK]\nhello\n")
  with pytest.raises(ValueError, match=r"has \[PAD\] = 1; expected id 0"):
    WordPieceTokenizer(tmp_path / "vocab.txt")
  with pytest.raises(ValueError, match="model.family='decoder': HF BERT needs family='encoder'"):
    hf_bert.export({}, model_config(base_config()), ("lm",), tmp_path / "out")
  both = small_bert()
  with pytest.raises(ValueError, match=r"heads \['classify', 'tag'\] have no HF BERT class"):
    hf_bert.export(random_params(build_model(both, ("classify", "tag"))), model_config(both),
                   ("classify", "tag"), tmp_path / "out")
  tag = small_bert()
  with pytest.raises(ValueError, match="2 label_names but the tag head has 3 classes"):
    hf_bert.export(random_params(build_model(tag, ("tag",))), model_config(tag), ("tag",),
                   tmp_path / "out", label_names=["a", "b"])


SPM_TEXTS = SENTENCES + ["  Leading and   repeated spaces  ", "numbers 12345, ½ and ﬁ ligatures",
                         "UPPER lower MiXeD", "tabs\tand\nnew lines", ""]


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_models_convert_to_fast_tokenizers_that_encode_alike(tmp_path, model_type):
  """The converted tokenizer gives SentencePiece's own ids, on the corpus and on odd text (BPE:
  but for a literal [CLS]/[SEP]/[MASK], split off as Hugging Face does; see sentencepiece_hf)."""
  import sentencepiece as spm
  from llm.convert import sentencepiece_hf
  from llm.data import tokenizer as tokenizer_lib
  corpus = (ROOT / "README.md").read_text().splitlines()
  path = tokenizer_lib.train(corpus, 600, model_type, tmp_path / "spm.model")
  sp, fast = spm.SentencePieceProcessor(model_file=str(path)), sentencepiece_hf.fast_tokenizer(path)
  for text in SPM_TEXTS + corpus[::7]:
    if model_type == "bpe" and any(p in text for p in tokenizer_lib.SPECIAL_PIECES):
      continue
    assert fast.encode(text, add_special_tokens=False).ids == sp.encode(text), text


def test_export_cli_writes_a_tokenizer_and_never_into_a_workdir_or_over_others_files(
    tmp_path, trained_bert):
  transformers = pytest.importorskip("transformers")
  from llm.data import tokenizer as tokenizer_lib
  workdir = trained_bert
  saved = {p: p.read_bytes() for p in workdir.iterdir() if p.is_file()}
  for out, problem in [(workdir, "is a training workdir"), (workdir / "config.json", "is a file")]:
    with pytest.raises(ValueError, match=re.escape(f"--out={out} {problem}")):
      exports.export_checkpoint(workdir, out)
  assert {p: p.read_bytes() for p in workdir.iterdir() if p.is_file()} == saved
  (tmp_path / "theirs").mkdir()
  (tmp_path / "theirs" / "config.json").write_text("{}")
  with pytest.raises(ValueError, match="holds files an export did not write \\(config.json\\)"):
    exports.export_checkpoint(workdir, tmp_path / "theirs")
  assert (tmp_path / "theirs" / "config.json").read_text() == "{}"

  out = tmp_path / "hf"
  for _ in range(2):   # a second export replaces the first's files
    exports.export_checkpoint(workdir, out)
  record = json.loads((out / exports.EXPORT_RECORD).read_text())
  assert record["step"] == 2 and "tokenizer.json" in record["files"]
  ours = tokenizer_lib.Tokenizer(workdir / "tokenizer.model")
  theirs = transformers.AutoTokenizer.from_pretrained(out)
  assert len(theirs) == ours.vocab_size
  for text in SPM_TEXTS:
    assert theirs(text)["input_ids"] == [ours.cls_id, *ours.encode(text), ours.sep_id], text
  pair = theirs("A first.", "A second.")
  assert pair["input_ids"] == [ours.cls_id, *ours.encode("A first."), ours.sep_id,
                               *ours.encode("A second."), ours.sep_id]
  model = transformers.AutoModelForPreTraining.from_pretrained(out)
  assert model.config.vocab_size == ours.vocab_size
