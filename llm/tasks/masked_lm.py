"""Masked language modelling (BERT/RoBERTa), with next-sentence prediction when config.nsp.

Rows (data/bert.py builds sentence pairs and masks): BERT `[CLS] A [SEP] B [SEP]` pairs, or
RoBERTa-style packed whole documents when nsp=False. Batch: `inputs` (with [MASK]s), `targets`
(original id at chosen positions, 0 elsewhere), `segment_ids`, `positions`, `token_types`, and
`nsp_labels` (1 = B follows A, 0 = random B, -1 = padding row) when NSP is on, and
`mlm_positions`: the chosen positions of each row, padded with 0 (the first token, never chosen),
so the MLM head computes vocabulary logits only there (BERT's max_predictions_per_seq): a row
has at most ceil(mask_prob x seq_len) of them, 15% of the positions. The loss is mean MLM loss
+ mean NSP loss, as in BERT.
"""
import math
import zlib

import jax.numpy as jnp
import numpy as np

from llm.data import batching, bert, packing
from llm.tasks import Task
from llm.tasks.losses import cross_entropy_sums


def rows(docs, all_docs, config, tok, train, shard=0):
  """BERT ([CLS] A [SEP] B [SEP] with NSP labels) or RoBERTa-style packed documents, then masking.

  `docs` is the stream of (doc_index, text) to read, possibly shuffled and repeated for epochs;
  `all_docs` is one epoch of the input shard's documents in index order, for random access (NSP
  partners come from the same shard, as BERT's data generation drew them from the same file).
  Masking is `dynamic` (new masks each epoch, RoBERTa) or `static` (the same masks every epoch,
  BERT); evaluation always uses static masks so its figures are comparable between runs.
  """
  num_docs = len(all_docs)
  static = config.masking == "static" or not train
  num_predictions = max_predictions(config)
  def rng_for(epoch, doc_index, purpose):
    return np.random.default_rng([config.seed, 0 if static else epoch, doc_index, purpose])

  def mask(row, rng):
    row["inputs"], row["targets"] = bert.mask_tokens(
        row["inputs"], row["segment_ids"], rng, mask_id=tok.mask_id, vocab_size=tok.vocab_size,
        special_ids=tok.special_ids, mask_prob=config.mask_prob)
    chosen = np.flatnonzero(row["targets"])
    row["mlm_positions"] = np.zeros(num_predictions, np.int32)
    row["mlm_positions"][:len(chosen)] = chosen   # bert.mask_tokens picks at most that many
    return row

  def sentences(text):
    return [ids for ids in (tok.encode(s) for s in bert.split_sentences(text)) if ids]

  if config.nsp:
    if num_docs < 2:
      raise ValueError(f"nsp=True needs at least 2 documents per input shard, got {num_docs}; "
                       f"use fewer input_shards")
    def pairs(step, item):
      doc_index, text = item[0], item[1]["text"]
      epoch = step // num_docs
      rng = rng_for(epoch, doc_index, 0)
      def random_sentences(r):
        # Uniform over the other documents: a draw of our own slot maps to the excluded last slot.
        other = r.integers(num_docs - 1)
        if all_docs[other][0] == doc_index:
          other = num_docs - 1
        # Only a window from a random sentence on is needed: tokenizing whole documents for a few
        # sentences made NSP rows several times slower to build.
        texts = bert.split_sentences(all_docs[other][1]["text"])
        window, length = [], 0
        for text in texts[r.integers(len(texts)):]:
          if length >= config.seq_len:
            break
          if ids := tok.encode(text):
            window.append(ids)
            length += len(ids)
        return window
      instances = bert.create_nsp_instances(sentences(text), random_sentences,
                                            config.seq_len - 3, rng)
      rows = []
      for k, inst in enumerate(instances):
        row = bert.assemble_pair(inst["tokens_a"], inst["tokens_b"], tok.cls_id, tok.sep_id,
                                 config.seq_len)
        row["nsp_labels"] = np.int32(inst["is_next"])
        rows.append(mask(row, rng_for(epoch, doc_index, 1 + k)))
      return rows
    return packing.flatten(docs.map_with_index(pairs).to_iter_dataset(batching.READ_OPTIONS))

  def document(item):
    ids = np.asarray([tok.cls_id] + tok.encode(item[1]["text"]) + [tok.sep_id], np.int32)
    return {"inputs": ids, "targets": ids}
  packed = packing.pack(docs.map(document).to_iter_dataset(batching.READ_OPTIONS),
                         config.seq_len)
  # Packed rows mix documents, so their masks are seeded by the row itself: by its content for
  # static masking (the same sequence always gets the same mask), by its place in the endless
  # streams of all input shards for dynamic masking (never the same twice).
  def mask_row(step, row):
    key = zlib.crc32(row["inputs"].tobytes()) if static else step * config.input_shards + shard
    return mask(row, rng_for(0, key, 1))
  return packed.map_with_index(mask_row)



def max_predictions(config):
  """Masked positions a row can have: bert.mask_tokens picks rint(mask_prob x candidates)."""
  return max(1, math.ceil(config.mask_prob * config.seq_len))


def normalizers(batch):
  norms = {"tokens": jnp.maximum(jnp.sum(batch["targets"] > 0), 1).astype(jnp.float32)}
  if "nsp_labels" in batch:
    norms["pairs"] = jnp.maximum(jnp.sum(batch["nsp_labels"] >= 0), 1).astype(jnp.float32)
  return norms


def loss_fn(outputs, batch, norms):
  targets = batch["targets"]
  if "mlm_positions" in batch:   # the head scored only the chosen positions
    targets = jnp.take_along_axis(targets, batch["mlm_positions"], axis=1)
  loss_sum, correct, count = cross_entropy_sums(outputs["mlm"], targets, targets > 0)
  sums = {"mlm_loss": loss_sum, "mlm_correct": correct, "mlm_tokens": count}
  loss = loss_sum / norms["tokens"]
  if "nsp_labels" in batch:
    labels = batch["nsp_labels"]
    sums["nsp_loss"], sums["nsp_correct"], sums["nsp_pairs"] = cross_entropy_sums(
        outputs["nsp"], labels, labels >= 0)
    loss += sums["nsp_loss"] / norms["pairs"]
  return loss, sums


def summarize(sums):
  tokens = max(float(sums["mlm_tokens"]), 1.0)
  mlm_loss = float(sums["mlm_loss"]) / tokens
  out = {"mlm_loss": mlm_loss, "perplexity": float(np.exp(mlm_loss)),
         "mlm_accuracy": float(sums["mlm_correct"]) / tokens, "loss": mlm_loss}
  if "nsp_pairs" in sums:
    pairs = max(float(sums["nsp_pairs"]), 1.0)
    out["nsp_loss"] = float(sums["nsp_loss"]) / pairs
    out["nsp_accuracy"] = float(sums["nsp_correct"]) / pairs
    out["loss"] = mlm_loss + out["nsp_loss"]
  return out


def check(config):
  if config.nsp and config.seq_len < 5:
    raise ValueError(f"seq_len={config.seq_len} with nsp=True leaves no room for a pair: "
                     f"[CLS] A [SEP] B [SEP] needs seq_len >= 5 (or set nsp=False)")


# nsp: next-sentence prediction (BERT); False = packed documents (RoBERTa). masking: dynamic
# (RoBERTa: new masks each epoch) | static (BERT: one set of masks per row).
CONFIG = {"nsp": True, "masking": "dynamic", "mask_prob": 0.15}

TASK = Task(name="masked_lm", families=("encoder",),
            heads=lambda config: ("mlm", "nsp") if config.nsp else ("mlm",), rows=rows,
            normalizers=normalizers, loss_fn=loss_fn, summarize=summarize, check=check,
            export_class=lambda config: "BertForPreTraining" if config.nsp else "BertForMaskedLM",
            config=CONFIG, ranges={"mask_prob": "(0, 1)"}, stream_keys=tuple(CONFIG))
