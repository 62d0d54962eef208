"""Which Hugging Face class holds which of our models: by config.json's `model_type` on the way in,
by the model's settings on the way out. Each format's module has the same functions:
model_overrides(folder), load_params(folder, cfg), check_exportable(cfg) and the name map;
BERT's export also writes task heads (hf_bert.export)."""
from llm.convert import hf_bert, hf_files, hf_gpt2, hf_llama, hf_t5

FORMATS = {f.MODEL_TYPE: f for f in (hf_bert, hf_gpt2, hf_llama, hf_t5)}


def of_folder(folder):
  """The format module of a Hugging Face folder, from its config.json's model_type."""
  folder = hf_files.require_files(folder, "a Hugging Face model folder")
  model_type = hf_files.read_config(folder).get("model_type")
  if model_type not in FORMATS:
    raise ValueError(f"{folder / 'config.json'} has model_type={model_type!r}; the Hugging Face "
                     f"models that map onto ours are {', '.join(sorted(FORMATS))}")
  return FORMATS[model_type]


def of_model(cfg):
  """The format module that can hold the ModelConfig `cfg`; raises ValueError saying why none
  of them can."""
  why = []
  for name, module in FORMATS.items():
    try:
      module.check_exportable(cfg)
      return module
    except ValueError as e:
      why.append(f"{name}: {e}")
  raise ValueError(f"no Hugging Face class holds this model ({'; '.join(why)})")
