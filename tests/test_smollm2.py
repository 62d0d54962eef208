"""SmolLM2-135M from its GGUF file against transformers loading the same file: tokenizer ids,
logits, greedy generation, and held-out perplexity through llm.evaluate."""
import contextlib
import io
import json
import os

import jax
import numpy as np
import pytest

from llm import convert, decoding, gguf_files
from llm.base_config import base_config
from llm.convert import gguf_llama
from llm.data.bpe import BpeTokenizer
from llm.models import build_model, model_config

from helpers import load_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TEXTS = ["The capital of France is", "In 1990, 12345 people paid $3.50 each. Héllo wörld!",
         "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
         "<|im_start|>user\nWhat is gravity?<|im_end|>\n<|im_start|>assistant\n"]


@pytest.fixture(scope="module")
def smollm2():
  try:
    gguf_file = gguf_files.read("smollm2")   # parsed once: llm.evaluate below reads it too
  except (FileNotFoundError, ImportError) as e:
    pytest.skip(str(e))
  config = base_config()
  config.update(gguf_llama.model_overrides(gguf_file))
  config.model.scan_layers = True   # 30 layers: one scanned layer compiles far faster
  model = build_model(config, heads=("lm",))
  params = convert.to_layout(gguf_llama.load_params(gguf_file, model_config(config)), scan=True)
  return gguf_file, BpeTokenizer(gguf_file), model, params


@pytest.fixture(scope="module")
def reference(smollm2):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("accelerate")
  import gguf
  ours, path = smollm2[0].reader, smollm2[0].path
  real = gguf.GGUFReader
  # transformers parses the file's metadata again for the config, the weights and the tokenizer
  # (7 s each here): it gets the parse gguf made for us, the same library's reading of it.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(gguf, "GGUFReader", lambda file, *args, **kwargs: ours if str(file) == str(
        path) else real(file, *args, **kwargs))
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
  return torch, model, tokenizer


def test_config_and_tokenizer_match_the_file(smollm2, reference):
  gguf_file, tok, model, _ = smollm2
  cfg = model.cfg
  assert (cfg.num_layers, cfg.embed_dim, cfg.num_heads, cfg.kv_heads, cfg.mlp_dim) == (
      30, 576, 9, 3, 1536)
  assert cfg.rope_base == 100000.0 and cfg.tie_embeddings and cfg.vocab_size == 49152
  assert (tok.bos_id, tok.eos_id, tok.add_bos) == (1, 2, False)
  _, _, hf_tok = reference
  for text in TEXTS:
    assert tok.encode(text) == hf_tok(text, add_special_tokens=False)["input_ids"], text
    assert tok.decode(tok.encode(text)) == text
  assert tok.encode(TEXTS[3])[0] == 1   # <|im_start|> is one control token


def test_exported_as_a_llama_folder_it_loads_in_transformers(smollm2, reference, tmp_path):
  """Our SmolLM2 params written by llm.hf export's Llama map and tokenizer export: the folder's
  LlamaForCausalLM gives transformers' GGUF logits, and its AutoTokenizer the file's ids and
  our --chat prompt."""
  from llm.convert import gguf_hf, hf_llama
  from llm.text_generation import chat_prompt
  gguf_file, tok, model, params = smollm2
  torch, hf_model, hf_tok = reference
  transformers = pytest.importorskip("transformers")
  hf_llama.export(convert.to_layout(params, scan=False), model.cfg, tmp_path,
                  {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": 0})
  gguf_hf.export(gguf_file, tmp_path, model.cfg.max_len)
  exported = transformers.AutoTokenizer.from_pretrained(tmp_path)
  for text in TEXTS:
    assert exported(text)["input_ids"] == hf_tok(text)["input_ids"], text
  messages = [{"role": "user", "content": "What is gravity?"}]
  assert exported.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == (
      chat_prompt(tok, "What is gravity?"))
  loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
  assert type(loaded).__name__ == "LlamaForCausalLM"
  ids = torch.tensor([tok.encode(TEXTS[1])])
  with torch.no_grad():
    np.testing.assert_allclose(loaded.eval()(input_ids=ids).logits.numpy(),
                               hf_model(input_ids=ids).logits.numpy(), atol=1e-4, rtol=1e-4)


def test_logits_match_transformers(smollm2, reference):
  _, tok, model, params = smollm2
  torch, hf_model, _ = reference
  rows = [tok.encode(text) for text in TEXTS]
  ids = np.zeros((len(rows), 48), np.int32)   # right-padded: a causal model never looks ahead
  for i, row in enumerate(rows):
    ids[i, :len(row)] = row
  segments = (ids != 0).astype(np.int32)
  ours = np.asarray(jax.jit(lambda p, b: model.apply({"params": p}, b)["lm"])(
      params, {"inputs": ids, "segment_ids": segments}))
  for i, row in enumerate(rows):
    with torch.no_grad():
      theirs = hf_model(input_ids=torch.tensor([row])).logits[0].numpy()
    assert np.abs(ours[i, :len(row)] - theirs).max() <= 1e-3, TEXTS[i]


def test_greedy_generation_matches_transformers(smollm2, reference):
  _, tok, model, params = smollm2
  torch, hf_model, _ = reference
  prompts = [tok.encode(TEXTS[0]), tok.encode(TEXTS[3])]
  ours, _ = decoding.generate(model, params, prompts, decoding.Settings(max_new_tokens=16))
  for prompt, got in zip(prompts, ours):
    with torch.no_grad():
      theirs = hf_model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False,
                                 eos_token_id=None, pad_token_id=tok.eos_id)[0, len(prompt):]
    expected = theirs.tolist()
    # Ours stops at </s> (<|im_end|>), transformers was told not to: compare up to it.
    assert got == expected[:len(got)] and (len(got) == 16 or expected[len(got)] == tok.eos_id)
    assert len(got) >= 8
  assert tok.decode(ours[0]).startswith(" Paris")


def test_heldout_perplexity_matches_transformers(smollm2, reference, tmp_path):
  from llm import tasks
  from llm.data import batching, corpora, tokenizer as tokenizer_lib
  from llm.evaluation import evaluate_checkpoint
  torch, hf_model, _ = reference
  config = load_config("smollm2", seq_len=32, batch_size=8, eval_batches=1,
                       **{"model.scan_layers": True})
  result = evaluate_checkpoint(config, tmp_path / "eval", "validation")
  # Reference: every packed segment of the same rows on its own through transformers.
  builder = corpora.prepare_corpus(config)
  tok = tokenizer_lib.load_tokenizer(config, builder)
  batches = batching.eval_batches(config, tasks.get_task("causal_lm"), tok, builder)
  total, count = 0.0, 0
  for batch in batches:
    for row in range(batch["inputs"].shape[0]):
      for seg in set(batch["segment_ids"][row]) - {0}:
        where = batch["segment_ids"][row] == seg
        inputs, targets = batch["inputs"][row][where], batch["targets"][row][where]
        with torch.no_grad():
          logits = hf_model(input_ids=torch.from_numpy(inputs[None]).long()).logits[0]
        logp = torch.log_softmax(logits.double(), -1).numpy()
        scored = targets > 0
        total -= logp[np.arange(len(targets)), targets][scored].sum()
        count += scored.sum()
  expected = float(np.exp(total / count))
  assert result["perplexity"] == pytest.approx(expected, rel=5e-3)
  assert json.loads((tmp_path / "eval" / "evaluate.json").read_text())["step"] == 0


def test_unsupported_gguf_files_are_named(tmp_path):
  gguf = pytest.importorskip("gguf")
  path = tmp_path / "gpt2.gguf"
  writer = gguf.GGUFWriter(path, "gpt2")
  writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  with pytest.raises(ValueError, match=r"holds a 'gpt2' model; only the 'llama' architecture"):
    gguf_files.GgufFile(path)
  (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
  with pytest.raises(ValueError, match=r"junk.gguf is not a readable GGUF file"):
    gguf_files.GgufFile(tmp_path / "junk.gguf")
  with pytest.raises(FileNotFoundError, match=r"nope.gguf does not exist"):
    gguf_files.GgufFile(tmp_path / "nope.gguf")


def test_a_llama_written_as_gguf_reads_back_here_and_in_transformers(smollm2, reference,
                                                                     tmp_path):
  """A 2-layer Llama (GQA, head_dim != embed / heads, untied output) over SmolLM2's vocabulary
  written by gguf_llama.write with SmolLM2's tokenizer and chat template: our reader gives the
  same params (f16: to f16's precision) and tokenizer, and transformers' gguf_file= loading
  gives our logits."""
  from helpers import model_and_params
  gguf_file, tok, _, _ = smollm2
  torch = reference[0]
  transformers = pytest.importorskip("transformers")
  # head_dim 16 with 4 heads of a 32-wide model: the file must say so (attention.key_length).
  model, params = model_and_params("llama", vocab=49152, num_kv_heads=2, tie_embeddings=False,
                                   head_dim=16)
  for dtype, tolerance in (("f16", 2e-3), ("f32", 0)):
    path = gguf_llama.write(tmp_path / f"tiny_{dtype}.gguf", params, model.cfg, gguf_file, dtype)
    written = gguf_files.GgufFile(path)
    config = base_config()
    config.update(gguf_llama.model_overrides(written))
    cfg = model_config(config)
    assert (cfg.num_layers, cfg.embed_dim, cfg.kv_heads, cfg.qkv_dim, cfg.tie_embeddings) == (
        2, 32, 2, 16, False)
    loaded = convert.flatten(gguf_llama.load_params(written, cfg))
    for name, value in convert.flatten(params).items():
      np.testing.assert_allclose(loaded[name], value, rtol=tolerance, atol=tolerance,
                                 err_msg=f"{dtype} {name}")
  assert (tmp_path / "tiny_f16.gguf").stat().st_size < 0.6 * path.stat().st_size
  ours = BpeTokenizer(written)
  assert ours.encode(TEXTS[1]) == tok.encode(TEXTS[1])
  assert ours.chat_template == tok.chat_template and (ours.bos_id, ours.eos_id) == (1, 2)
  ids = np.asarray([tok.encode(TEXTS[1])], np.int32)
  with contextlib.redirect_stderr(io.StringIO()):   # transformers' GGUF reader's progress bar
    reference_model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=path.name, dtype=torch.float32).eval()
  with torch.no_grad():
    theirs = reference_model(input_ids=torch.from_numpy(ids).long()).logits.numpy()
  mine = np.asarray(build_model(config, heads=("lm",)).apply(
      {"params": gguf_llama.load_params(written, cfg)}, {"inputs": ids})["lm"])
  assert np.abs(theirs).max() > 1.0
  np.testing.assert_allclose(mine, theirs, atol=1e-4, rtol=1e-4)
  with pytest.raises(ValueError, match="exists, and an export never overwrites a file"):
    from llm import exports
    exports.export_gguf(tmp_path, path)
