"""Translation between English and Spanish on Bible verses (King James Version <-> Reina-Valera
1909, aligned by reference; validation and test are whole books: see
llm/data/builders/bible_en_es.py), scored with BLEU and chrF (sacrebleu) on beam-search output.

  bash scripts/setup.sh --corpora     # unpacks the two Bibles (Debian's sword-text-kjv, -sparv)
  python -m llm.train --config=configs/translate.py:direction=en-es --workdir=/tmp/en_es
  python -m llm.evaluate --config=configs/translate.py:direction=en-es --workdir=/tmp/en_es \
      --split=test                    # every test verse (484), predictions_test.jsonl
Args: direction=en-es (default) | es-en; model=t5 (default) | smollm2 (SmolLM2-135M-Instruct
asked to translate in its chat template: evaluate zero-shot, or fine-tune; tuning=full | lora);
init=PATH (t5: one of our T5 workdirs, e.g. a configs/recipe.py:family=t5 run, or a Hugging Face
T5 folder with its tokenizer; init=minilm: a BERT2BERT warm start, whose uncased WordPiece
vocabulary writes no accents, which caps BLEU and chrF into Spanish).
A T5.1.1 encoder-decoder (4 + 4 layers of 256) from scratch, one 8,000-piece SentencePiece
vocabulary for both languages, trained on the 30,180 training pairs. Training evaluates the first
decode.max_examples=64 validation verses; llm.evaluate decodes the whole split (484 test verses).
"""
from llm.base_config import base_config, parse_arg, smollm2_seq2seq, tiny_t5

CORPORA = {"en-es": "bible_en_es", "es-en": "bible_es_en"}
LANGUAGES = {"en-es": ("English", "Spanish"), "es-en": ("Spanish", "English")}


def get_config(arg=None):
  args = parse_arg(arg, direction="en-es", model="t5", init="", tuning="full")
  if args["direction"] not in CORPORA:
    raise ValueError(f"config arg direction={args['direction']!r}: expected one of "
                     f"{sorted(CORPORA)}")
  c = base_config()
  c.objective = "seq2seq"
  c.corpus = CORPORA[args["direction"]]
  c.seq2seq.update(template="{source}", target_len=192)
  c.decode.update(max_new_tokens=192, num_beams=4, length_penalty=1.0, batch_size=32,
                  max_examples=64)
  c.eval_every = 500
  c.checkpoint_every = 500
  if args["model"] == "smollm2":
    source, target = LANGUAGES[args["direction"]]
    return smollm2_seq2seq(c, f"Translate this verse from {source} to {target}.", args,
                           seq_len=448, total_steps=500)
  if args["model"] != "t5" or args["tuning"] != "full":
    raise ValueError(f"config args model={args['model']!r}, tuning={args['tuning']!r}: expected "
                     f"model=t5 (full fine-tuning) or model=smollm2 (tuning=full or lora)")
  tiny_t5(c, args["init"])
  c.vocab_size = 8000
  # The longest verse is 154 pieces in either language: whole verses on both sides.
  c.seq_len = 192
  c.batch_size = 32
  c.total_steps = 2000
  c.optimizer.update(learning_rate=1e-3, warmup_steps=200, decay="cosine", weight_decay=0.01)
  return c
