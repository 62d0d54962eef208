"""A JAX/Flax codebase for pretraining, fine-tuning and evaluating Transformer language models."""
import os

# TensorFlow is only used by the input pipeline (TFDS) and TensorBoard: keep its C++ logs quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
