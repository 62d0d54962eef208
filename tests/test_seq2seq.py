"""seq2seq (summarization): rows score exactly the target, inputs keep their template when cut,
evaluation decodes in padded batches exactly what each prompt gives alone, ROUGE against hand
counts, and the CLI's scores and predictions against rouge-score and llm.generate."""
import json
import types

import jax
import numpy as np
import pytest
from rouge_score import rouge_scorer

from llm import decoding, evaluation, parallel, weights
from llm.base_config import base_config
from llm.data import corpora, tokenizer as tokenizer_lib
from llm.data.builders import aclsum_summary
from llm.models import build_model
from llm.tasks import EvalSet, seq2seq
from llm.training import train_and_evaluate

from helpers import load_config, model_and_params, run_cli, tiny_config, tiny_overrides

SUMMARIZE = "configs/summarize.py"


@pytest.fixture(scope="module")
def corpus():
  """The summarize config, its prepared corpus and tokenizer (trained on first use, cached)."""
  config = load_config("summarize.py")
  builder = corpora.prepare_corpus(config)
  return config, builder, tokenizer_lib.load_tokenizer(config, builder)


def test_builder_reads_every_paper_aspect():
  for split, papers in (("train", 100), ("validation", 50), ("test", 100)):
    examples = aclsum_summary.read_split(split)
    assert len(examples) == 3 * papers
    assert len({e["id"] for e in examples}) == len(examples)
    assert {e["aspect"] for e in examples} == set(aclsum_summary.ASPECTS)
    assert all(len(e["source"].split()) > 50 and 5 < len(e["target"].split()) < 100
               for e in examples)


@pytest.mark.parametrize("family", ["encoder_decoder", "decoder"])
def test_rows_score_exactly_the_target(corpus, family):
  config, builder, tok = corpus
  config = config.copy_and_resolve_references()
  config.model.family = family
  config.seq_len, config.seq2seq.target_len = 128, 32
  if family == "decoder":
    config.seq2seq.template = "Summarize the {aspect}.\n{source}\nSummary:"
  docs = corpora.documents(builder, "validation")
  examples = [docs[i][1] for i in range(len(docs))]
  rows = list(seq2seq.rows(docs, config, tok))
  seen = []
  for row in rows:
    for segment in range(1, row["segment_ids"].max() + 1):
      if family == "encoder_decoder":
        side = row["decoder_segment_ids"] == segment
        targets = row["targets"][side]
        # The decoder reads the target shifted right behind <s>.
        assert row["decoder_inputs"][side].tolist() == [tok.bos_id] + targets[:-1].tolist()
        inputs = row["inputs"][row["segment_ids"] == segment]
        assert inputs[-1] == tok.eos_id and len(inputs) <= config.seq_len
        seen.append((inputs.tolist(), targets.tolist()))
      else:
        mine = row["segment_ids"] == segment
        inputs, targets = row["inputs"][mine], row["targets"][mine]
        scored = targets > 0
        # Scored positions form one run at the end: the target and </s>, nothing of the prompt.
        first = int(np.argmax(scored))
        assert scored[first:].all() and not scored[:first].any()
        assert inputs[first + 1:].tolist() == targets[first:-1].tolist()
        seen.append((inputs[:first + 1].tolist(), targets[first:].tolist()))
  assert len(seen) == len(examples)   # packing drops and splits none
  expected = sorted((seq2seq.prompt_ids(tok, config, e), seq2seq.target_ids(tok, config, e))
                    for e in examples)
  assert sorted(seen) == expected
  for _, target in seen:
    assert target[-1] == tok.eos_id and len(target) <= config.seq2seq.target_len


def test_a_long_source_is_cut_and_the_template_kept(corpus):
  _, _, tok = corpus
  example = {"source": "word " * 500, "aspect": "outcome"}
  template = "Summarize the {aspect}:\n{source}\nSummary:"
  ids = seq2seq.fit_input(tok, template, example, 60)
  assert 50 <= len(ids) <= 60
  assert tok.decode(ids).startswith("Summarize the outcome:")
  assert tok.decode(ids).endswith("Summary:")
  short = seq2seq.fit_input(tok, template, {"source": "a b c", "aspect": "x"}, 60)
  assert short == tok.encode(template.format(source="a b c", aspect="x"))


@pytest.mark.parametrize("family,beams", [("t5", 1), ("t5", 3), ("decoder", 2)])
def test_eval_decoding_in_padded_batches_equals_each_prompt_alone(family, beams):
  model, params = model_and_params(family)
  config = base_config()
  config.decode.update(max_new_tokens=6, num_beams=beams, batch_size=3)
  tok = types.SimpleNamespace(eos_id=3)
  rng = np.random.default_rng(0)
  prompts = [[2] * (family == "decoder") + list(rng.integers(4, 40, n)) for n in
             (3, 11, 5, 8)]   # 4 prompts: the last batch of 3 holds one
  decode = evaluation.make_decoder(model, config, tok, None, None)
  got = decode(params, prompts)
  settings = decoding.Settings(max_new_tokens=6, num_beams=beams, stop_ids=(3,))
  for prompt, ids in zip(prompts, got):
    assert ids == decoding.generate(model, params, [prompt], settings)[0][0]


def test_rouge_and_bleu_against_hand_counts():
  words = ["the", "cat", "sat", "ran", "on", "mat", "a", "dog"]
  tok = types.SimpleNamespace(decode=lambda ids: " ".join(words[i] for i in ids))
  config = base_config()
  config.seq2seq.template = "{source}"
  examples = [{"id": "a", "source": "s", "target": "the cat ran"},
              {"id": "b", "source": "s", "target": "a dog on the mat"}]
  predictions = [[0, 1, 2], [6, 7, 4, 0, 5]]   # "the cat sat"; the second exactly right
  result = seq2seq.score(predictions, EvalSet(examples, (), tok, config))
  # "the cat sat" vs "the cat ran": 2 of 3 unigrams, 1 of 2 bigrams, LCS "the cat".
  assert result["rouge1"] == pytest.approx((2 / 3 + 1) / 2)
  assert result["rouge2"] == pytest.approx((1 / 2 + 1) / 2)
  assert result["rougeL"] == pytest.approx((2 / 3 + 1) / 2)
  assert result["generated_length"] == 4
  perfect = seq2seq.score([[6, 7, 4, 0, 5]] * 2, EvalSet([examples[1]] * 2, (), tok, config))
  assert perfect["bleu"] == pytest.approx(1.0)
  assert seq2seq.score([[3, 3, 3, 3]], EvalSet([examples[1]], (), tok, config))["bleu"] == 0.0


def test_summarize_trains_evaluates_and_decodes_like_generate(corpus, tmp_path):
  """The tiny T5 from the CLI: evaluate.json's ROUGE is the mean of what rouge-score gives the
  predictions file, one record per validation example in order, and the decoding engine turns a
  record's input, alone, into the same text."""
  args = [*tiny_overrides(total_steps=3, seq_len=256, batch_size=4, eval_batches=1),
          "--config.model.num_decoder_layers=2", "--config.model.head_dim=16",
          "--config.seq2seq.target_len=24", "--config.decode.max_new_tokens=8",
          "--config.decode.num_beams=2", "--config.decode.batch_size=3",
          "--config.decode.max_examples=4"]
  proc = run_cli("train", SUMMARIZE, tmp_path, *args, devices=1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
  assert {"eval/rouge1", "eval/rouge2", "eval/rougeL", "eval/bleu"} <= set(last)
  proc = run_cli("evaluate", SUMMARIZE, tmp_path, *args, devices=1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((tmp_path / "evaluate.json").read_text())
  records = [json.loads(line) for line in
             (tmp_path / "predictions_validation.jsonl").read_text().splitlines()]
  source = corpus[1].as_data_source("validation")   # the split's order as prepared
  validation = [corpora.decode_example(source[i]) for i in range(4)]
  assert [r["id"] for r in records] == [e["id"] for e in validation]
  assert [r["reference"] for r in records] == [e["target"] for e in validation]
  scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
  for key in ("rouge1", "rouge2", "rougeL"):
    expected = np.mean([scorer.score(r["reference"], r["prediction"])[key].fmeasure
                        for r in records])
    assert result[key] == pytest.approx(expected, abs=1e-9)
  # What the engine gives this record's input alone (no batch, no padding to the split's longest).
  tok = corpus[2]
  mesh = parallel.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  params, saved, _ = weights.workdir_params(tmp_path, mesh)
  settings = decoding.Settings(max_new_tokens=8, num_beams=2, stop_ids=(tok.eos_id,))
  alone = decoding.generate(build_model(saved, heads=("lm",)), params,
                            [tok.encode(records[1]["input"]) + [tok.eos_id]], settings)[0][0]
  assert tok.decode(alone) == records[1]["prediction"]


@pytest.mark.fault
def test_a_template_field_the_corpus_lacks_is_named(tmp_path):
  config = tiny_config("summarize", total_steps=2, **{"seq2seq.template": "{title}: {source}"})
  with pytest.raises(ValueError, match=r"seq2seq.template='\{title\}: \{source\}' names the "
                                       r"field 'title'"):
    train_and_evaluate(config, tmp_path)
