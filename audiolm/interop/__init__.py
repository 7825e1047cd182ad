"""The field's released models in, ours out (docs/pretrained.md).

- `joblib_kmeans`: textlesslib's and slamkit's k-means files (joblib pickles of scikit-learn
  estimators), read without running the pickle, into this project's safetensors tokenizer.
- `unit_lm`, `language_models`: a released unit LM (SLAM's UnitLM layout, TWIST's `offset` layout) as
  the semantic LM of a run or bundle, next to our own `Decoder`s.
- `flat_codes`: a released one-stage LM over a codec's codes flattened per frame (Llama-Mimi).
- `export`: checks that our saved LMs (stock `LlamaForCausalLM` folders, audiolm.lm.stock) give our
  logits through transformers, and the `inputs_embeds` recipe for the acoustic LMs' trunks.
"""
