"""GPT-2, Llama and T5 between transformers and us: a randomly initialised transformers model of
each class, saved as a folder, gives our model the same logits on a padded batch; our params
exported as a folder load in transformers' Auto classes and give our logits back."""
import json

import numpy as np
import pytest

from llm.base_config import base_config
from llm.convert import flatten, hf_formats, hf_gpt2, hf_llama, hf_t5
from llm.models import build_model, model_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 61
# name -> (transformers config class, its settings): small shapes, every variant a file may have.
MODELS = {
    "gpt2_tied": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=4, n_positions=24,
                                     n_inner=48)),
    "gpt2_untied": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=4, n_positions=24,
                                       tie_word_embeddings=False)),
    "llama_gqa": ("LlamaConfig", dict(hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=24, rms_norm_eps=1e-5,
                                      rope_parameters={"rope_type": "default",
                                                       "rope_theta": 500.0})),
    "llama_tied_head_dim": ("LlamaConfig", dict(hidden_size=32, intermediate_size=40,
                                                num_hidden_layers=2, num_attention_heads=2,
                                                head_dim=8, max_position_embeddings=24,
                                                tie_word_embeddings=True)),
    "t5_v1_1": ("T5Config", dict(d_model=32, d_kv=8, d_ff=40, num_layers=2,
                                 num_decoder_layers=3, num_heads=4,
                                 relative_attention_num_buckets=8,
                                 relative_attention_max_distance=16,
                                 feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    "t5_v1_0_tied": ("T5Config", dict(d_model=32, d_kv=8, d_ff=40, num_layers=2, num_heads=4,
                                      relative_attention_num_buckets=8,
                                      relative_attention_max_distance=16)),
}


def random_hf_model(name):
  """A transformers model of MODELS[name] with weights far from their initialisation (logits of
  a few units, not ~0), in eval mode."""
  class_name, settings = MODELS[name]
  config = getattr(transformers, class_name)(vocab_size=VOCAB, **settings)
  model = transformers.AutoModelForSeq2SeqLM.from_config(config) if class_name == "T5Config" \
      else transformers.AutoModelForCausalLM.from_config(config)
  generator = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn(p.shape, generator=generator))
  return model.eval()


def batch(seed=0, rows=3, length=10):
  """Right-padded rows of ids in [1, VOCAB) (0 pads) of lengths length, length - 3, ..."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, VOCAB, (rows, length)).astype(np.int32)
  for i in range(rows):
    ids[i, length - 3 * i:] = 0
  return ids


def hf_logits(model, ids, decoder_ids=None):
  with torch.no_grad():
    kwargs = {"input_ids": torch.from_numpy(ids).long(),
              "attention_mask": torch.from_numpy(ids != 0).long()}
    if decoder_ids is not None:
      kwargs.update(decoder_input_ids=torch.from_numpy(decoder_ids).long(),
                    decoder_attention_mask=torch.from_numpy(decoder_ids != 0).long())
    return model(**kwargs).logits.numpy()


def our_model(folder):
  config = base_config()
  config.update(hf_formats.of_folder(folder).model_overrides(folder))
  return config, build_model(config, heads=("lm",))


def our_logits(model, params, ids, decoder_ids=None):
  inputs = {"inputs": ids}
  if decoder_ids is not None:
    inputs["decoder_inputs"] = decoder_ids
  return np.asarray(model.apply({"params": params}, inputs)["lm"])


def assert_same_logits(ours, theirs, ids):
  real = ids != 0   # padding positions carry no prediction
  assert np.abs(theirs[real]).max() > 1.0   # not a near-zero model that matches anything
  np.testing.assert_allclose(ours[real], theirs[real], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_transformers_model_runs_here_and_back(tmp_path, name):
  reference = random_hf_model(name)
  reference.save_pretrained(tmp_path / "hf")
  folder = tmp_path / "hf"
  fmt = hf_formats.of_folder(folder)
  config, model = our_model(folder)
  cfg = model_config(config)
  params = fmt.load_params(folder, cfg)
  ids = batch()
  decoder_ids = batch(seed=1, length=7) if cfg.family == "encoder_decoder" else None
  theirs = hf_logits(reference, ids, decoder_ids)
  ours = our_logits(model, params, ids, decoder_ids)
  assert_same_logits(ours, theirs, ids if decoder_ids is None else decoder_ids)

  # Ours out: the exported folder loads in transformers' Auto classes and gives our logits.
  assert hf_formats.of_model(cfg) is fmt
  fmt.export(params, cfg, tmp_path / "ours", {"pad_token_id": 0})
  auto = (transformers.AutoModelForSeq2SeqLM if decoder_ids is not None
          else transformers.AutoModelForCausalLM)
  loaded = auto.from_pretrained(tmp_path / "ours", dtype=torch.float32).eval()
  assert type(loaded) is type(reference)
  assert_same_logits(ours, hf_logits(loaded, ids, decoder_ids),
                     ids if decoder_ids is None else decoder_ids)
  # And back in again, the same params.
  again = fmt.load_params(tmp_path / "ours", model_config(our_model(tmp_path / "ours")[0]))
  expected = flatten(params)
  for path, value in flatten(again).items():
    np.testing.assert_allclose(value, expected[path], rtol=1e-6, atol=1e-6, err_msg=path)
  assert set(flatten(again)) == set(expected)


@pytest.mark.parametrize("fmt, settings, message", [
    (hf_gpt2, {"activation_function": "relu"}, "activation_function='relu'"),
    (hf_llama, {"rope_parameters": {"rope_type": "linear", "factor": 2.0}},
     "rope_type='linear'"),
    (hf_llama, {"attention_bias": True}, "attention_bias=True"),
    (hf_t5, {"feed_forward_proj": "gated-relu"}, "feed_forward_proj='gated-relu'"),
])
def test_a_file_our_model_would_compute_differently_is_refused(tmp_path, fmt, settings, message):
  reference = random_hf_model({hf_gpt2: "gpt2_tied", hf_llama: "llama_gqa",
                               hf_t5: "t5_v1_1"}[fmt])
  reference.save_pretrained(tmp_path)
  config = json.loads((tmp_path / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps({**config, **settings}))
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
    fmt.model_overrides(tmp_path)


def test_bad_folders_are_one_line(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json does not exist"):
    hf_formats.of_folder(tmp_path)
  (tmp_path / "config.json").write_text('{"model_type": "mamba"}')
  (tmp_path / "model.safetensors").write_bytes(b"")
  with pytest.raises(ValueError, match="model_type='mamba'; the Hugging Face models that map "
                                       "onto ours are bert, gpt2, llama, t5"):
    hf_formats.of_folder(tmp_path)
  random_hf_model("llama_gqa").save_pretrained(tmp_path / "llama")
  config, _ = our_model(tmp_path / "llama")
  config.model.num_layers = 3   # shapes that disagree with the file
  with pytest.raises(ValueError, match="has no tensor 'model.layers.2.input_layernorm.weight'"):
    hf_llama.load_params(tmp_path / "llama", model_config(config))


def test_a_model_no_class_holds_says_why(tmp_path):
  config = base_config()
  config.vocab_size = VOCAB
  config.model.update(family="decoder", position="alibi")
  with pytest.raises(ValueError, match="no Hugging Face class holds this model .*gpt2: "
                                       "model.position='alibi'"):
    hf_formats.of_model(model_config(config))


def test_a_trained_gpt_exports_with_its_tokenizer(tmp_path, trained_gpt):
  """llm.hf export of a gpt_tiny run: GPT2LMHeadModel and AutoTokenizer from the folder give
  our pipeline's ids (<s> first) and our model's logits on them."""
  import jax
  from llm import exports, parallel, weights
  from llm.data import tokenizer as tokenizer_lib
  exports.export_checkpoint(trained_gpt, tmp_path / "hf")
  theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
  ours = tokenizer_lib.Tokenizer(trained_gpt / "tokenizer.model")
  text = "The quick brown fox jumps over the lazy dog."
  ids = theirs(text)["input_ids"]
  assert ids == [ours.bos_id, *ours.encode(text)]
  reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf",
                                                                dtype=torch.float32).eval()
  assert type(reference).__name__ == "GPT2LMHeadModel"
  mesh = parallel.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  params, config, _ = weights.workdir_params(trained_gpt, mesh)
  model = build_model(config, heads=("lm",))
  tokens = np.asarray([ids], np.int32)
  ours_logits = our_logits(model, params, tokens)
  np.testing.assert_allclose(ours_logits, hf_logits(reference, tokens), atol=1e-4, rtol=1e-4)


def test_a_gpt2_folder_fine_tunes_here(tmp_path, trained_gpt, capsys):
  """init=<a GPT-2 folder> (here our own export of a gpt_tiny run): the model takes the folder's
  shapes and every weight, the tokenizer is the folder's tokenizer.json with config.json's ids,
  and training goes on from there."""
  import jax
  from llm import config_checks, exports, parallel, transfer, weights
  from llm.data import tokenizer as tokenizer_lib
  from llm.training import train_and_evaluate
  from helpers import tiny_config
  exports.export_checkpoint(trained_gpt, tmp_path / "hf")
  config = tiny_config(init=str(tmp_path / "hf"), total_steps=2, **{"model.num_layers": 1})
  config_checks.resolve_config(config, 8)
  assert config.model.num_layers == 2 and config.tokenizer.kind == "huggingface"
  tok = tokenizer_lib.load_tokenizer(config, None)
  ours = tokenizer_lib.Tokenizer(trained_gpt / "tokenizer.model")
  text = "A text to tokenize, with digits 1234."
  assert tok.encode(text) == ours.encode(text)
  assert (tok.bos_id, tok.eos_id, tok.add_bos) == (ours.bos_id, ours.eos_id, True)

  mesh = parallel.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  saved, _, _ = weights.workdir_params(trained_gpt, mesh)
  loaded = transfer.init_params(config, build_model(config, heads=("lm",)), mesh)
  got = flatten(loaded)
  for path, value in flatten(saved).items():
    np.testing.assert_array_equal(np.asarray(got[path]), np.asarray(value), err_msg=path)

  capsys.readouterr()
  train_and_evaluate(tiny_config(init=str(tmp_path / "hf"), total_steps=2), tmp_path / "run")
  assert "newly initialised: nothing" in capsys.readouterr().out
  assert (tmp_path / "run" / "checkpoints" / "2").is_dir()


def test_a_t5_folder_loads_with_its_tokenizer(tmp_path):
  """init=<a T5 folder> with a tokenizer.json of fewer pieces than the model's rows (as T5's own
  32,100 for 32,128): our model is the folder's T5 with the rows past the pieces masked out of
  its logits, its decoder starts from config.json's decoder_start_token_id (else the pad id),
  and texts do not start with <s>."""
  import jax
  from llm import config_checks, parallel, transfer
  from llm.convert import sentencepiece_hf
  from llm.data import tokenizer as tokenizer_lib
  from helpers import tiny_config
  reference = random_hf_model("t5_v1_1")
  reference.save_pretrained(tmp_path)
  spm = tmp_path / "spm.model"
  words = np.random.default_rng(0).choice(list("abcdefghijklmnopqrstuvwxyz"), (400, 5))
  tokenizer_lib.train([" ".join("".join(w) for w in words[i:i + 8]) for i in range(0, 400, 8)],
                      VOCAB - 11, "unigram", spm)
  folder_config = json.loads((tmp_path / "config.json").read_text())
  config = tiny_config("summarize")
  config.model.family = "encoder_decoder"
  sentencepiece_hf.export(spm, tmp_path, model_config(config))
  config = tiny_config("summarize", init=str(tmp_path))
  config_checks.resolve_config(config, 8)
  assert (config.vocab_size, config.model.unused_vocab) == (VOCAB, 11)
  tok = tokenizer_lib.load_tokenizer(config, None)
  assert (tok.bos_id, tok.eos_id, tok.add_bos) == (
      folder_config["pad_token_id"], folder_config["eos_token_id"], False)   # T5's start: pad
  assert tok.encode("Some text") == tokenizer_lib.Tokenizer(spm).encode("Some text")
  mesh = parallel.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  params = transfer.init_params(config, build_model(config, heads=("lm",)), mesh)
  ids, decoder_ids = batch(), batch(seed=1, length=7)
  ours = our_logits(build_model(config, heads=("lm",)), params, ids, decoder_ids)
  theirs = hf_logits(reference, ids, decoder_ids)
  assert_same_logits(ours[..., :VOCAB - 11], theirs[..., :VOCAB - 11], decoder_ids)
  assert (ours[..., VOCAB - 11:] == -1e9).all()


def test_gguf_export_refusals_are_one_line(tmp_path, trained_gpt):
  from llm import exports
  for out, message in [(tmp_path / "model.bin", "is not a .gguf file name"),
                       (tmp_path / "model.gguf", "GGUF export writes Llama-preset decoders; "
                                                  "model.norm_kind='layernorm'")]:
    with pytest.raises(ValueError, match=message):
      exports.export_gguf(trained_gpt, out)
  with pytest.raises(ValueError, match="--gguf_dtype='q4': expected one of"):
    exports.export_gguf(trained_gpt, tmp_path / "model.gguf", "q4")
  assert not list(tmp_path.iterdir())


def test_a_tokenizer_whose_id_0_is_text_is_refused(tmp_path):
  """Id 0 pads every batch here and no loss counts it: GPT-2's "!" there would never be learned."""
  import tokenizers
  from llm.data.hf_tokenizer import FolderTokenizer
  vocab = {"!": 0, "<|endoftext|>": 1, "a": 2, "b": 3}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<|endoftext|>"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.save(str(tmp_path / "tokenizer.json"))
  (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 1}))
  with pytest.raises(ValueError, match="id 0 is the text token '!', but id 0 pads every batch"):
    FolderTokenizer(tmp_path)
  vocab = {"<pad>": 0, "<|endoftext|>": 1, "a": 2, "!": 3}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<|endoftext|>"))
  tok.add_special_tokens(["<pad>"])
  tok.save(str(tmp_path / "tokenizer.json"))
  assert (FolderTokenizer(tmp_path).bos_id, FolderTokenizer(tmp_path).eos_id) == (1, 1)
