"""Named architectures as plain `config.model` values: `config.model.update(presets.BERT)`.

Shapes (layers, widths, vocabulary) are each config's own; a preset fixes what makes the family
what it is, so configs read "a Llama with these shapes" instead of a dozen switches.
"""
# BERT (Devlin et al., 2019): post-LN encoder, learned positions, segment embeddings, GELU.
BERT = dict(family="encoder", norm="post", norm_kind="layernorm", layer_norm_eps=1e-12,
            embed_norm=True, embed_scale=False, mlp="gelu", use_bias=True, position="learned",
            type_vocab_size=2, tie_embeddings=True, dropout_rate=0.1, attention_dropout_rate=0.1)

# GPT-2 (Radford et al., 2019): pre-LN decoder, learned positions, tanh GELU, tied output.
GPT2 = dict(family="decoder", norm="pre", norm_kind="layernorm", layer_norm_eps=1e-5,
            embed_norm=False, embed_scale=False, mlp="gelu_tanh", use_bias=True,
            position="learned", type_vocab_size=0, tie_embeddings=True, dropout_rate=0.1,
            attention_dropout_rate=0.0)

# Llama (Touvron et al., 2023): pre-RMSNorm decoder, RoPE, SwiGLU, no biases, often GQA.
LLAMA = dict(family="decoder", norm="pre", norm_kind="rmsnorm", layer_norm_eps=1e-5,
             embed_norm=False, embed_scale=False, mlp="swiglu", use_bias=False, position="rope",
             rope_base=10000.0, type_vocab_size=0, dropout_rate=0.0, attention_dropout_rate=0.0)

# The original Transformer (Vaswani et al., 2017): post-LN encoder-decoder, sinusoidal positions,
# embeddings scaled by sqrt(d) and shared by both stacks and the output, ReLU MLP.
TRANSFORMER = dict(family="encoder_decoder", norm="post", norm_kind="layernorm",
                   layer_norm_eps=1e-6, embed_norm=False, embed_scale=True, mlp="relu",
                   use_bias=True, position="sinusoidal", type_vocab_size=0, tie_embeddings=True,
                   dropout_rate=0.1, attention_dropout_rate=0.0)

# T5.1.1 (Raffel et al., 2020, and its 1.1 update): pre-RMSNorm encoder-decoder without biases,
# relative position buckets shared across layers, gated (tanh) GELU, untied output layer.
T5 = dict(family="encoder_decoder", norm="pre", norm_kind="rmsnorm", layer_norm_eps=1e-6,
          embed_norm=False, embed_scale=False, mlp="geglu", use_bias=False, position="relative",
          relative_buckets=32, relative_max_distance=128, type_vocab_size=0, tie_embeddings=False,
          dropout_rate=0.1, attention_dropout_rate=0.0)

PRESETS = {"bert": BERT, "gpt2": GPT2, "llama": LLAMA, "transformer": TRANSFORMER, "t5": T5}
