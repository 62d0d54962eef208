"""corpus="mixture": several corpora as one training stream. Each corpus's rows are built on
their own (its documents, its shuffle, its packing) and interleaved in the proportions of
config.mixture.weights: rows are full, packed sequences, so a weight is a share of the tokens
trained on. Validation runs per corpus (metrics `<corpus>/loss`, ...) and over all corpora's
validation rows together (`loss`, ...)."""
import json
import os
import pathlib

from llm import runlog

# The corpora a mixture may hold: the unlabeled ones and the labeled ones that lend the running
# text of their train and validation examples (never their test split, never their labels):
# twitter_ner its tweets, aclsum_qa its papers (each once, not once per question).
MIXABLE = ("gensim_text", "linux_docs", "python_docs", "fortunes", "sotu", "moby_dick",
           "web_bible", "bbc_news", "tweet_sentiment", "spam_assassin", "twitter_ner",
           "aclsum_qa")


def weights(config):
  """{corpus: weight} of the corpora with a positive weight, by name."""
  return {name: float(w) for name, w in sorted(config.mixture.weights.items()) if w > 0}


def of(config, member):
  """The Mixture of config's weighted corpora, each the builder `member(config, name)` gives."""
  corpus_weights = weights(config)
  return Mixture({name: _as_documents(member(config, name)) for name in corpus_weights},
                 corpus_weights)


def _as_documents(builder):
  """The builder itself when its examples have a `text`; else a view of its examples' running
  text as documents ({"id", "text"}), each distinct text once."""
  if "text" in builder.info.features:
    return builder
  return _TextView(builder)


class _TextView:
  """A labeled corpus (tokens, or QA contexts) seen as documents of text: what the pretraining
  objectives read. Everything but the splits' contents is the builder's."""

  def __init__(self, builder):
    self._builder = builder

  def __getattr__(self, name):
    return getattr(self._builder, name)

  def as_data_source(self, split):
    from llm.data import corpora
    source = self._builder.as_data_source(split)
    texts = dict.fromkeys(corpora.as_text(corpora.text_of(source[i])) for i in range(len(source)))
    return [{"id": f"{self._builder.name}-{split}-{i}", "text": text}
            for i, text in enumerate(texts)]


def check(config, pretraining_objectives):
  """ValueError for a mixture that cannot run: no weight set, or an objective that reads labels
  or evaluation records (the mixture has neither). The weights' range is base_config's."""
  if config.corpus != "mixture":
    return
  if not weights(config):
    raise ValueError(f"corpus='mixture' needs a positive weight for at least one corpus, e.g. "
                     f"--config.mixture.weights.gensim_text=1 (corpora: {list(MIXABLE)})")
  if config.objective not in pretraining_objectives:
    raise ValueError(f"corpus='mixture' is for pretraining: objective={config.objective!r} "
                     f"reads labels or records; use one of {list(pretraining_objectives)}")


class _Concatenated:
  """The members' data sources one after another: what a mixture's split holds in all."""

  def __init__(self, sources):
    self._sources = list(sources)
    self._ends = []
    total = 0
    for source in self._sources:
      total += len(source)
      self._ends.append(total)

  def __len__(self):
    return self._ends[-1] if self._ends else 0

  def __getitem__(self, index):
    if not 0 <= index < len(self):
      raise IndexError(index)
    for source, end in zip(self._sources, self._ends):
      if index < end:
        return source[index - (end - len(source))]


class _Info:
  def __init__(self, splits):
    self.splits = splits
    self.features = {"text": None}


class Mixture:
  """The prepared builders of a mixture's corpora ({name: builder}, `members`) and their
  weights, standing where one corpus' TFDS builder stands: a split is every member's."""

  def __init__(self, members, corpus_weights):
    self.members, self.weights = dict(members), dict(corpus_weights)
    self.name = "mixture_" + "+".join(self.members)   # what a tokenizer trained on it is named
    self.info = _Info(["train", "validation"])

  def as_data_source(self, split):
    return _Concatenated(b.as_data_source(split) for b in self.members.values())


def describe(mixture, tok, config, data_dir):
  """Logs one line per corpus: its weight, share of rows, documents and tokens (counted once per
  tokenizer and cached), and how many epochs of it the run reads."""
  from llm.data import corpora
  total = sum(mixture.weights.values())
  tokens_trained = config.total_steps * config.batch_size * config.seq_len
  for name, builder in mixture.members.items():
    share = mixture.weights[name] / total
    counts = _token_counts(builder, tok, data_dir / "token_counts", name, corpora)
    epochs = share * tokens_trained / max(counts["train_tokens"], 1)
    runlog.log(f"mixture: {name} weight {mixture.weights[name]:g} ({share:.1%} of rows): "
               f"{counts['train_documents']:,} train documents, {counts['train_tokens']:,} "
               f"tokens; {counts['validation_documents']:,} validation documents; this run "
               f"reads {epochs:.3g} epochs of it")


def _token_counts(builder, tok, folder, name, corpora):
  from llm import checksums
  path = pathlib.Path(folder) / f"{name}_{checksums.sha256(tok.path)[:16]}.json"
  if path.is_file():
    return json.loads(path.read_text())
  counts = {}
  for split in ("train", "validation"):
    source = builder.as_data_source(split)
    texts = [corpora.as_text(corpora.text_of(source[i])) for i in range(len(source))]
    counts[f"{split}_documents"] = len(texts)
    counts[f"{split}_tokens"] = sum(len(ids) for ids in tok.encode_batch(texts))
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".{os.getpid()}.tmp")   # runs started together write their own
  tmp.write_text(json.dumps(counts))
  tmp.replace(path)
  return counts
