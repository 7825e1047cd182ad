"""A released k-means (textlesslib, fairseq's HuBERT recipes, slamkit: `joblib.dump` of a scikit-learn
`KMeans` or `MiniBatchKMeans`) read without running the pickle.

A pickle is a program: unpickling calls whatever functions it names. `read_kmeans` runs it through an
unpickler that knows a short list of names only, and gives most of them stand-ins of its own:

- scikit-learn's KMeans / MiniBatchKMeans (any of their module paths) -> a class that only keeps the
  state it is given; no scikit-learn code runs, and scikit-learn need not be installed;
- joblib's `NumpyArrayWrapper` (how joblib stores an array: its dtype and shape in the pickle, the
  raw bytes right after it in the file) -> a stand-in whose bytes are read here, never as a pickle;
- numpy's own array, dtype and scalar reconstructors (numeric data only).

Any other name (`os.system`, `builtins.eval`, ...) stops the load before the object is made, with one
line naming the file and the refused name. joblib's compressed files (zlib, gzip, bz2, xz) are
decompressed first.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import zlib
from pathlib import Path

import numpy as np

ESTIMATORS = {"KMeans", "MiniBatchKMeans"}
ESTIMATOR_MODULES = {"sklearn.cluster._kmeans", "sklearn.cluster.k_means_", "sklearn.cluster._k_means"}
WRAPPER_MODULES = {"joblib.numpy_pickle", "sklearn.externals.joblib.numpy_pickle"}
NUMPY_MODULES = {"numpy.core.multiarray", "numpy._core.multiarray"}


class UnsafePickleError(ValueError):
    """The file names something other than a k-means' state and numpy arrays."""


class _Estimator:
    """Stands in for scikit-learn's estimator: keeps its state, does nothing else."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise UnsafePickleError(f"an estimator state of type {type(state).__name__}, expected a dict")
        self.state = state


class _ArrayWrapper:
    """Stands in for joblib's NumpyArrayWrapper: its attributes say what bytes follow in the file."""


def _reconstruct(subclass, shape, dtype_code):
    """numpy's `_reconstruct` for plain arrays only (an ndarray subclass could run its own code)."""
    if subclass is not np.ndarray:
        raise UnsafePickleError(f"an array of class {subclass!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"a numpy scalar of dtype {dtype!r}")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError("an array of Python objects (dtype object)")
    return dtype


ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _dtype}


class _KMeansUnpickler(pickle._Unpickler):  # the Python unpickler: its BUILD can be extended, as joblib does
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, name: str):
        super().__init__(file)
        self.file, self.name = file, name

    def find_class(self, module: str, name: str):
        if name in ESTIMATORS and module in ESTIMATOR_MODULES:
            return _Estimator
        if name == "NumpyArrayWrapper" and module in WRAPPER_MODULES:
            return _ArrayWrapper
        if module in NUMPY_MODULES and name in ("_reconstruct", "scalar"):
            return _reconstruct if name == "_reconstruct" else _scalar
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        raise UnsafePickleError(f"{self.name}: refused to load: the pickle calls {module}.{name}, which is not part of "
                                "a scikit-learn k-means (a pickle can run any code; nothing of it was run)")

    def load_build(self):
        super().load_build()
        if isinstance(self.stack[-1], _ArrayWrapper):
            self.stack[-1] = self._read_array(self.stack[-1])

    dispatch[pickle.BUILD[0]] = load_build

    def _read_array(self, wrapper: _ArrayWrapper) -> np.ndarray:
        """The bytes joblib wrote after the wrapper: an alignment byte and padding (joblib >= 1.2),
        then the array's data in the wrapper's order."""
        dtype, order = getattr(wrapper, "dtype", None), getattr(wrapper, "order", "C")
        shape = tuple(getattr(wrapper, "shape", ()))
        if getattr(wrapper, "subclass", np.ndarray) is not np.ndarray or not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise UnsafePickleError(f"{self.name}: refused to load: an array that is not plain numeric data")
        if getattr(wrapper, "numpy_array_alignment_bytes", None) is not None:
            self.file.read(self.file.read(1)[0])
        count = int(np.prod(shape, dtype=np.int64))
        data = self.file.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError(f"{self.name}: truncated (an array of shape {shape} has only {len(data)} bytes)")
        array = np.frombuffer(data, dtype=dtype).copy()
        return array.reshape(shape[::-1]).T if order == "F" else array.reshape(shape)


# joblib's compressed files start with their compressor's magic bytes
DECOMPRESS = {b"\x1f\x8b": gzip.decompress, b"BZ": bz2.decompress, b"\xfd7zXZ": lzma.decompress, b"\x5d\x00": lzma.decompress}


def _raw(path: Path) -> bytes:
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path}: empty file")
    for magic, decompress in DECOMPRESS.items():
        if data.startswith(magic):
            return decompress(data)
    if data[:1] == b"\x78":  # zlib
        return zlib.decompress(data)
    return data


def read_kmeans(path: str | Path) -> tuple[np.ndarray, dict]:
    """A joblib k-means file -> (centroids [K, dim] float32, a few facts of the estimator: its class's
    scikit-learn version and K). Refuses, before anything is made, a pickle that names anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        estimator = _KMeansUnpickler(io.BytesIO(_raw(path)), str(path)).load()
    except UnsafePickleError as err:
        raise UnsafePickleError(str(err) if str(err).startswith(str(path)) else f"{path}: refused to load: {err}") from None
    except (pickle.UnpicklingError, EOFError, IndexError, zlib.error, OSError, lzma.LZMAError) as err:
        raise ValueError(f"{path}: not a joblib k-means file ({type(err).__name__}: {err})") from None
    if not isinstance(estimator, _Estimator):
        raise ValueError(f"{path}: holds a {type(estimator).__name__}, not a scikit-learn KMeans or MiniBatchKMeans")
    centroids = estimator.state.get("cluster_centers_")
    if not isinstance(centroids, np.ndarray) or centroids.ndim != 2 or not np.isfinite(centroids).all():
        raise ValueError(f"{path}: the k-means has no fitted, finite cluster_centers_ (was it fitted?)")
    return centroids.astype(np.float32), {"num_clusters": int(centroids.shape[0]), "dim": int(centroids.shape[1]),
                                          "sklearn_version": str(estimator.state.get("_sklearn_version", "unknown"))}


def import_kmeans(path: str | Path, encoder: str, layer: int, revision: str = "", device: str = "cpu"):
    """A released k-means over `encoder`'s block `layer` (a transformers speech encoder: Hub id or
    folder) -> a `SemanticTokenizer` giving scikit-learn's `predict` ids: the raw features, no
    normalisation (the released k-means were fitted on raw features), nearest centroid."""
    import torch

    from audiolm.semantic.features import build_features
    from audiolm.semantic.tokenizer import SemanticTokenizer, SemanticTokenizerConfig

    centroids, info = read_kmeans(path)
    features = build_features("ssl", encoder, layer, device, revision=revision)
    if features.dim != info["dim"]:
        raise ValueError(f"{path}: centroids of {info['dim']} dimensions, but {encoder} block {layer} gives "
                         f"{features.dim}-dimensional features (a k-means of another encoder?)")
    config = SemanticTokenizerConfig(backend="ssl", model=encoder, layer=layer, num_clusters=info["num_clusters"],
                                     sample_rate=features.sample_rate, frame_rate=features.frame_rate, feature_dim=features.dim,
                                     utterance_norm=False, revision=revision)
    dim = features.dim
    return SemanticTokenizer(config, features, torch.from_numpy(centroids), torch.zeros(dim), torch.ones(dim))
