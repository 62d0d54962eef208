"""Generates text with a decoder or an encoder-decoder (llm/decoding.py: KV cache, one jitted loop).

  python -m llm.generate --config=configs/gpt_tiny.py --workdir=/tmp/gpt_tiny --prompt="The war"
  python -m llm.generate --config=configs/t5_tiny.py --workdir=/tmp/t5 --prompt="A source text"
Weights: the latest checkpoint in --workdir; without one (or without --workdir) the config's init.
--temperature=0 (the default) is greedy; --num_beams>1 is beam search. --format=json ends with one
JSON line: {"samples": [{"prompt", "text", "ids"}], "new_tokens", "decode_tokens_per_sec"};
--name=NAME writes the same to <workdir>/generate_<name>.json (what a sweep's evaluation reads).
The work itself is text_generation.generate_text.
"""
from absl import app, flags

from llm import cli
from llm.text_generation import Request, generate_text

flags.DEFINE_multi_string("prompt", [""], "Text to continue (a decoder) or to transform (an "
                          "encoder-decoder); repeat the flag for a batch of prompts.")
flags.DEFINE_integer("max_new_tokens", 64, "How many tokens to add at most.")
flags.DEFINE_float("temperature", 0.0, "Softmax temperature; 0 = greedy.")
flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens; 0 = all.")
flags.DEFINE_float("top_p", 1.0, "Sample from the smallest set of tokens holding this mass.")
flags.DEFINE_integer("num_beams", 1, "Beam search with this many beams (1 = no beam search).")
flags.DEFINE_float("length_penalty", 1.0, "Beam score = log-probability / length ** this.")
flags.DEFINE_integer("num_samples", 1, "Continuations per prompt.")
flags.DEFINE_integer("sample_seed", 0, "Random seed for sampling.")
flags.DEFINE_enum("format", "text", ["text", "json"], "text, or a JSON line at the end.")
flags.DEFINE_string("name", "", "Also write the samples and the decoding speed to "
                    "<workdir>/generate_<name>.json.")
flags.DEFINE_bool("chat", False, "Wrap each prompt as a user turn in the tokenizer's chat "
                  "template (GGUF models such as SmolLM2-Instruct).")


def main(argv):
  cli.no_arguments(argv)
  f = flags.FLAGS
  request = Request(prompts=tuple(f.prompt), max_new_tokens=f.max_new_tokens,
                    temperature=f.temperature, top_k=f.top_k, top_p=f.top_p,
                    num_beams=f.num_beams, length_penalty=f.length_penalty,
                    num_samples=f.num_samples, seed=f.sample_seed, format=f.format, name=f.name,
                    chat=f.chat)
  cli.run(generate_text, cli.FLAGS.config, cli.FLAGS.workdir, request)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
