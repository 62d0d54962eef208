"""TFDS builders over corpora that ship inside installable packages (no downloads)."""
from llm.data.builders.gensim_text import GensimText

BUILDERS = {"gensim_text": GensimText}
