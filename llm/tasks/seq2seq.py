"""Sequence to sequence (summarization, translation): map a source text to a target text.

Examples hold text fields (ACLSum: `source`, `aspect`, `target`); the model's input is
`seq2seq.template` formatted over them (e.g. "{aspect}: {source}"), the source cut so that input
and target fit. Both families train on the target's tokens only:

  encoder-decoder   inputs = input </s>, decoder reads <s> target, predicts target </s>; packed
                    first-fit on both sides (several whole examples per row pair, as T5)
  decoder           one row = <s> input target </s> (prefix LM), loss on target </s> only;
                    whole examples packed first-fit into rows of seq_len

Evaluation: teacher-forced loss and perplexity of the targets, then each validation input is
decoded with the decoding engine (llm/decoding.py; config.decode: greedy or beam search) and the
texts are scored against the references: ROUGE-1/2/L/Lsum F-measure (Google's `rouge-score`,
Porter stemming, averaged over examples), corpus BLEU (`sacrebleu`, its default 13a
tokenization) and corpus chrF (`sacrebleu`: character 6-grams, beta 2). All are fractions: bleu
0.273 is BLEU 27.3.
"""
import string

import grain
import numpy as np

from llm import scores
from llm.data import batching, corpora, packing
from llm.models.generation import DECODING
from llm.tasks import Task, causal_lm



def fields(template):
  return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def fit_input(tok, template, example, budget):
  """Token ids of the template over `example` (no <s>/</s>), at most `budget` long: the source
  is shortened (whole pieces from its end) so the rest of the template stays intact."""
  try:
    ids = tok.encode(template.format(**example))
  except KeyError as e:
    raise ValueError(f"seq2seq.template={template!r} names the field {e}, which the examples "
                     f"do not have; they have {sorted(example)}") from None
  if len(ids) <= budget or "source" not in example:
    return ids[:budget]
  source = tok.encode(example["source"])
  keep = max(len(source) - (len(ids) - budget), 0)
  while True:   # re-tokenizing at the cut can add a piece or two
    ids = tok.encode(template.format(**dict(example, source=tok.decode(source[:keep]))))
    if len(ids) <= budget or keep == 0:
      return ids[:budget]
    keep = max(keep - (len(ids) - budget), 0)


def input_budget(config, tok):
  """Input pieces a row holds: the encoder's seq_len less </s>; a decoder's row less the target."""
  if config.model.family == "encoder_decoder":
    return config.seq_len - 1
  return config.seq_len + 1 - config.seq2seq.target_len - tok.add_bos


def prompt_ids(tok, config, example):
  """What the model reads before the first target token: the encoder input, or a decoder's
  prefix (with <s> where the tokenizer starts texts with it)."""
  ids = fit_input(tok, config.seq2seq.template, example, input_budget(config, tok))
  return DECODING[config.model.family].prompt_ids(tok, ids)


def target_ids(tok, config, example):
  return tok.encode(example["target"])[:config.seq2seq.target_len - 1] + [tok.eos_id]


def rows(docs, config, tok):
  if config.model.family == "encoder_decoder":
    def pair(item):
      target = target_ids(tok, config, item[1])
      return {"inputs": np.asarray(prompt_ids(tok, config, item[1]), np.int32),
              "decoder_inputs": np.asarray([tok.bos_id] + target[:-1], np.int32),
              "targets": np.asarray(target, np.int32)}
    examples = docs.map(pair).to_iter_dataset(batching.READ_OPTIONS)
    return packing.pack_pairs(examples, config.seq_len, config.seq2seq.target_len)

  def prefixed(item):
    prompt, target = prompt_ids(tok, config, item[1]), target_ids(tok, config, item[1])
    ids = np.asarray(prompt + target, np.int32)
    targets = ids[1:].copy()
    targets[:len(prompt) - 1] = 0   # the prompt is read, not scored
    return {"inputs": ids[:-1], "targets": targets}
  examples = docs.map(prefixed).to_iter_dataset(batching.READ_OPTIONS)
  packed = grain.experimental.FirstFitPackIterDataset(
      examples, length_struct={"inputs": config.seq_len, "targets": config.seq_len},
      num_packing_bins=4, shuffle_bins=False)
  return packed.map(lambda r: {"inputs": r["inputs"], "targets": r["targets"],
                               "segment_ids": r["inputs_segment_ids"],
                               "positions": r["inputs_positions"]})


def examples(source, config):
  """The split's first decode.max_examples examples (0: all), decoded to text fields."""
  count = len(source) if config.decode.max_examples <= 0 else min(len(source),
                                                                  config.decode.max_examples)
  return [corpora.decode_example(source[i]) for i in range(count)]


def prompts(split):
  return [prompt_ids(split.tok, split.config, example) for example in split.examples]


def records(predictions, split):
  """One dict per example: id, input, generated text, reference and its ROUGE F-measures."""
  scorer = scores.rouge_scorer()
  out, tok, config = [], split.tok, split.config
  for ids, example in zip(predictions, split.examples):
    text = tok.decode(ids)
    rouge = scorer.score(example["target"], text)
    out.append({"id": example.get("id", ""), "input": config.seq2seq.template.format(**example),
                "prediction": text, "reference": example["target"],
                **{k: rouge[k].fmeasure for k in scores.ROUGE_TYPES}})
  return out


def score(predictions, split):
  """Mean ROUGE F-measures over the examples decoded, corpus BLEU and chrF (fractions)."""
  rows_ = records(predictions, split)
  count = max(len(rows_), 1)
  result = {k: sum(r[k] for r in rows_) / count for k in scores.ROUGE_TYPES}
  predicted, references = [r["prediction"] for r in rows_], [r["reference"] for r in rows_]
  result["bleu"] = scores.corpus_bleu(predicted, references)
  result["chrf"] = scores.corpus_chrf(predicted, references)
  result["generated_length"] = sum(len(p) for p in predictions) / count
  return result


def check(config):
  s, d = config.seq2seq, config.decode
  if config.model.family == "decoder" and config.seq_len + 1 - s.target_len < 2:
    raise ValueError(f"seq2seq.target_len={s.target_len} leaves no room for the input in a "
                     f"decoder row of seq_len={config.seq_len}; raise seq_len or lower target_len")
  if config.model.get("prompt_length", 0):
    raise ValueError("seq2seq decodes its predictions, which soft prompts do not support "
                     "(model.prompt_length > 0): use LoRA or full fine-tuning")
  if config.model.family == "decoder":
    longest = config.seq_len + 1 - s.target_len + d.max_new_tokens
    if longest > config.model.max_len:
      raise ValueError(f"an input of up to {config.seq_len + 1 - s.target_len} pieces + "
                       f"decode.max_new_tokens={d.max_new_tokens} exceeds model.max_len="
                       f"{config.model.max_len}; lower one of them")
  names = fields(s.template)
  if not names:
    raise ValueError(f"seq2seq.template={s.template!r} names no field of the examples, e.g. "
                     f"'{{source}}'")


TASK = Task(name="seq2seq", families=("encoder_decoder", "decoder"),
            heads=lambda config: ("lm",), rows=rows, normalizers=causal_lm.normalizers,
            loss_fn=causal_lm.loss_fn, summarize=causal_lm.summarize, examples=examples,
            prompts=prompts, records=records, score=score, check=check, extra_ids=True,
            # seq2seq: the model's input as a format string over the example's text fields, and
            # the longest target kept (pieces, with </s>). decode: the settings of the validation
            # predictions (llm/decoding.py), prompts per decoding batch, and how many examples
            # are decoded (0 = the whole split).
            config={"seq2seq": dict(template="{source}", target_len=64),
                    "decode": dict(max_new_tokens=64, num_beams=1, length_penalty=1.0,
                                   batch_size=16, max_examples=0)},
            ranges={"seq2seq.target_len": ("[2, inf)", "a piece and </s>"),
                    "decode.max_new_tokens": "[1, inf)",
                    "decode.num_beams": ("[1, inf)", "1 = greedy"),
                    "decode.length_penalty": "(-inf, inf)", "decode.batch_size": "[1, inf)",
                    "decode.max_examples": ("[0, inf)", "0 = the whole split")},
            stream_keys=("seq2seq",))
