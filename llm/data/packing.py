"""Row tools the tasks share: packing documents into full rows (decoder and encoder-decoder),
flattening lists of examples, and padded BERT input rows."""
import grain
import numpy as np


def pack(dataset, seq_len, keys=("inputs", "targets")):
  """Concat-then-split packing into full rows of `keys`; every piece of a different document gets
  its own segment id, and positions restart at 0 in each (attention never crosses documents)."""
  packed = grain.experimental.ConcatThenSplitIterDataset(
      dataset, length_struct={k: seq_len for k in keys})
  def rename(r):
    out = {k: r[k] for k in keys}
    out.update(segment_ids=r[f"{keys[0]}_segment_ids"], positions=r[f"{keys[0]}_positions"])
    return out
  return packed.map(rename)


def pack_pairs(dataset, seq_len, target_len):
  """Encoder-decoder packing: whole (inputs, decoder_inputs, targets) examples placed first-fit
  into rows of seq_len source and target_len target tokens, never split; segment ids number the
  examples of a row alike on both sides, positions restart at 0 in each."""
  packed = grain.experimental.FirstFitPackIterDataset(
      dataset, length_struct={"inputs": seq_len, "decoder_inputs": target_len,
                              "targets": target_len},
      num_packing_bins=4, shuffle_bins=False)
  return packed.map(lambda r: {
      "inputs": r["inputs"], "segment_ids": r["inputs_segment_ids"],
      "positions": r["inputs_positions"], "decoder_inputs": r["decoder_inputs"],
      "decoder_segment_ids": r["decoder_inputs_segment_ids"],
      "decoder_positions": r["decoder_inputs_positions"], "targets": r["targets"]})


class _ListFlatten(grain.experimental.FlatMapTransform):
  """Lists of examples -> examples (grain keeps the position inside a list in its state)."""
  max_fan_out = 1 << 20

  def flat_map(self, element):
    return element


def flatten(dataset):
  return grain.experimental.FlatMapIterDataset(dataset, _ListFlatten())


def padded_row(ids, seq_len):
  """One BERT input row holding `ids` (one segment, token type 0), padded with 0 to seq_len."""
  row = {"inputs": np.zeros(seq_len, np.int32), "segment_ids": np.zeros(seq_len, np.int32),
         "positions": np.zeros(seq_len, np.int32), "token_types": np.zeros(seq_len, np.int32)}
  row["inputs"][:len(ids)] = ids
  row["segment_ids"][:len(ids)] = 1
  row["positions"][:len(ids)] = np.arange(len(ids))
  return row


def encode_single(tok, text, seq_len):
  """[CLS] text [SEP], truncated to seq_len and padded with 0: the BERT input for one text."""
  return padded_row([tok.cls_id] + tok.encode(text)[:seq_len - 2] + [tok.sep_id], seq_len)
