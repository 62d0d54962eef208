"""The model's settings: one frozen record, built from `config.model` (see models/__init__.py),
and the groups of its keys that checkpoints and inits compare."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shapes and switches of one model; built from `config.model` (see models/__init__.py)."""
  vocab_size: int
  family: str = "decoder"        # encoder (BERT) | decoder (GPT, Llama) | encoder_decoder
  num_layers: int = 4            # (the encoder's, in encoder-decoders)
  num_decoder_layers: int = 0    # encoder_decoder: layers of the decoder; 0 = num_layers
  embed_dim: int = 256
  num_heads: int = 4
  num_kv_heads: int = 0          # 0 = num_heads (multi-head); fewer = grouped-query attention
  head_dim: int = 0              # 0 = embed_dim // num_heads
  mlp_dim: int = 1024
  mlp: str = "gelu"              # gelu | gelu_tanh | relu | swiglu | geglu (see MLPS)
  use_bias: bool = True          # biases in attention and MLP (GPT-2, BERT yes; Llama no)
  max_len: int = 128             # size of the learned position table / longest allowed sequence
  position: str = "learned"      # learned | sinusoidal | rope | relative (T5's bias) | alibi | none
  rope_base: float = 10000.0
  relative_buckets: int = 32     # T5 relative attention bias: buckets and the distance past
  relative_max_distance: int = 128   # which all offsets share the last bucket
  norm: str = "pre"              # placement: pre (GPT-2, Llama) | post (original Transformer, BERT)
  norm_kind: str = "layernorm"   # layernorm | rmsnorm
  layer_norm_eps: float = 1e-6
  embed_norm: bool = False       # normalise the summed embeddings (BERT)
  embed_scale: bool = False      # token embeddings x sqrt(embed_dim) (original Transformer)
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  type_vocab_size: int = 0       # BERT segment (sentence A/B) embeddings; 0 = none
  tie_embeddings: bool = True
  unused_vocab: int = 0          # rows at the vocabulary's end that no token has (a Hugging Face
                                 # T5's past its tokenizer): masked out of the LM head's logits
  num_classes: int = 0           # for the `classify` and `tag` heads
  prompt_length: int = 0         # soft prompt: trainable vectors inserted after the first token
  dtype: str = "float32"         # compute dtype; parameters are always float32
  attention_impl: str = "auto"   # auto | xla | cudnn: passed to jax.nn.dot_product_attention
  scan_layers: bool = False      # one nn.scan over the layers (params get a leading `layers` axis)
  remat: str = "none"            # rematerialisation policy per layer (see REMAT_POLICIES)

  @classmethod
  def defaults(cls):
    """{key: default} of every setting but vocab_size (the run's own): base_config's `model`."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.name != "vocab_size"}

  @property
  def kv_heads(self):
    return self.num_kv_heads or self.num_heads

  @property
  def qkv_dim(self):
    return self.head_dim or self.embed_dim // self.num_heads


# Settings that change which parameters exist or their shapes: a checkpoint restores only where
# these match (the layer layout, scan_layers, converts on its own).
SHAPE_KEYS = ("family", "num_layers", "num_decoder_layers", "embed_dim", "num_heads",
              "num_kv_heads", "head_dim", "mlp_dim", "mlp", "use_bias", "max_len", "position",
              "relative_buckets", "norm_kind", "embed_norm", "type_vocab_size", "tie_embeddings",
              "prompt_length")
# The architecture a fine-tuning run takes over from its init source: its shapes (not the run's
# own soft prompt) and the settings its weights were trained with.
ARCHITECTURE_KEYS = tuple(k for k in SHAPE_KEYS if k != "prompt_length") + (
    "rope_base", "relative_max_distance", "norm", "layer_norm_eps", "embed_scale",
    "unused_vocab")
