"""The field's released models in, ours out (docs/pretrained.md).

- `joblib_kmeans`: textlesslib's and slamkit's k-means files (joblib pickles of scikit-learn
  estimators), read without running the pickle, into this project's safetensors tokenizer.
- `export`: our LMs as stock `transformers` models (`LlamaForCausalLM`), and back.
"""
