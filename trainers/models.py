"""The networks the heavy-tailed self-regularization papers study, and a name registry.

Every model keeps its weight matrices in plainly named ``nn.Linear`` / ``nn.Conv2d`` /
``nn.Embedding`` modules (``fc1``, ``conv2``, ``q_proj`` ...), so ``analysis.extract_layers``
finds and labels them without special cases.

Models
------
``mlp3``
    MLP3 of Martin & Mahoney (2021): three hidden fully-connected ReLU layers (512 wide in the
    paper) and a linear classifier.
``lenet5``
    LeNet-5: two conv + max-pool stages, then FC 120 → 84 → classes.
``minialexnet``
    MiniAlexNet of Martin & Mahoney (2021, Sec. 6): two conv layers (each with max-pool and batch
    norm), FC1 → 384, FC2 → 192, then the classifier. An adaptive pool to 4×4 before FC1 makes it
    work for 8×8, 28×28 and 32×32 inputs; with 256 channels FC1 is 4096 × 384 as in the paper.
``student``
    The two-layer student of Kothapalli et al. ("From spikes to heavy tails"):
    ``f(x) = aᵀ σ(W x / √d) / √h`` with ``W`` (h × d) and ``a`` (h,) entries i.i.d. N(0, 1).
``char_gpt``
    A small decoder-only character-level transformer with separate q/k/v/out projections.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from htsweep.analysis._validation import Interval, check_value
from htsweep.trainers.user_code import UserCodeError, call_factory, is_import_path, resolve

__all__ = [
    "MODELS",
    "MLP3",
    "LeNet5",
    "MiniAlexNet",
    "TwoLayerStudent",
    "CharGPT",
    "build_model",
    "data_facts",
]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": F.gelu,
    "softplus": F.softplus,
    "erf": torch.erf,
    "linear": lambda z: z,
}


def _did_you_mean(key: Any, valid: Any) -> str:
    """`` (did you mean 'x'?)`` with the closest of ``valid`` to ``key``, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_choice(kind: str, value: str, options: Any) -> None:
    """Raise ``ValueError`` naming ``value`` and listing ``options`` when ``value`` is not one."""
    options = list(options)
    if value in options:
        return
    names = [str(o) for o in options]
    lowered = {n.lower(): n for n in names}
    hint = [lowered[str(value).lower()]] if str(value).lower() in lowered else difflib.get_close_matches(
        str(value), names, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ValueError(f"unknown {kind} {value!r}{extra}; choose one of {', '.join(map(repr, options))}")


def _check_dropout(p: float) -> float:
    check_value("dropout", p, [Interval(float, 0.0, 1.0, closed="left")], error=ValueError)
    return float(p)


def _flat_size(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))


class MLP3(nn.Module):
    """Three hidden fully-connected ReLU layers and a linear classifier (Martin & Mahoney's MLP3).

    Parameters
    ----------
    in_features : int
        Flattened input size (784 for MNIST, 64 for sklearn digits).
    n_classes : int, default=10
    width : int, default=512
        Width of each hidden layer; FC2 and FC3 are ``width × width`` (Q = 1).
    dropout : float, default=0.0
        Dropout probability after each hidden activation.

    Notes
    -----
    Input of shape ``(batch, *)`` is flattened; output logits have shape ``(batch, n_classes)``.
    """

    def __init__(self, in_features: int, n_classes: int = 10, *, width: int = 512, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, width)
        self.fc4 = nn.Linear(width, n_classes)
        self.drop = nn.Dropout(_check_dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for fc in (self.fc1, self.fc2, self.fc3):
            x = self.drop(torch.relu(fc(x)))
        return self.fc4(x)


class LeNet5(nn.Module):
    """LeNet-5: conv(6, 5×5) → pool → conv(16, 5×5) → pool → FC 120 → 84 → classes.

    Parameters
    ----------
    in_channels : int, default=1
    n_classes : int, default=10
    input_size : int, default=28
        Height (= width) of the input images. 32 gives the classic unpadded LeNet-5; 28 pads the
        first conv by 2; small inputs (8×8 digits) pad both convs. An adaptive pool makes the
        flattened size ``16 · 5 · 5 = 400`` for any input size.
    dropout : float, default=0.0
        Dropout probability after FC1 and FC2.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, *, input_size: int = 28,
                 dropout: float = 0.0):
        super().__init__()
        pad1 = 0 if input_size >= 32 else 2
        size1 = (input_size + 2 * pad1 - 4) // 2
        pad2 = 0 if size1 >= 10 else 2
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=pad1)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad2)
        self.pool = nn.AdaptiveAvgPool2d(5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, n_classes)
        self.drop = nn.Dropout(_check_dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2, ceil_mode=True)
        x = self.pool(x).flatten(1)
        x = self.drop(torch.relu(self.fc1(x)))
        x = self.drop(torch.relu(self.fc2(x)))
        return self.fc3(x)


class MiniAlexNet(nn.Module):
    """MiniAlexNet of Martin & Mahoney (2021, Sec. 6.1).

    Two 5×5 conv layers, each followed by ReLU, 3×3/2 max-pool and batch norm; an adaptive average
    pool to 4×4; FC1 (→ 384) and FC2 (→ 192) with ReLU; a linear classifier. FC layers use Glorot
    normal initialization as in the paper.

    Parameters
    ----------
    in_channels : int, default=3
    n_classes : int, default=10
    channels : tuple of (int, int), default=(64, 256)
        Output channels of conv1 and conv2. FC1 is ``(channels[1]·16) × 384``: 4096 × 384 by
        default, the paper's shape (Q ≈ 10.67).
    batch_norm : bool, default=True
        Batch norm after each conv stage (never on the FC layers, as in the paper).
    dropout : float, default=0.0
        Dropout probability after FC1 and FC2.

    Notes
    -----
    Input ``(batch, in_channels, H, W)`` with any ``H, W ≥ 1`` (8×8 digits, 28×28 MNIST, 32×32
    CIFAR-10 / SVHN); output logits ``(batch, n_classes)``.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 10, *,
                 channels: tuple[int, int] = (64, 256), batch_norm: bool = True, dropout: float = 0.0):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2)
        self.bn1 = nn.BatchNorm2d(c1) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.bn2 = nn.BatchNorm2d(c2) if batch_norm else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(c2 * 16, 384)
        self.fc2 = nn.Linear(384, 192)
        self.fc3 = nn.Linear(192, n_classes)
        self.drop = nn.Dropout(_check_dropout(dropout))
        for fc in (self.fc1, self.fc2, self.fc3):
            nn.init.xavier_normal_(fc.weight)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(F.max_pool2d(torch.relu(self.conv1(x)), 3, stride=2, padding=1))
        x = self.bn2(F.max_pool2d(torch.relu(self.conv2(x)), 3, stride=2, padding=1))
        x = self.pool(x).flatten(1)
        x = self.drop(torch.relu(self.fc1(x)))
        x = self.drop(torch.relu(self.fc2(x)))
        return self.fc3(x)


class TwoLayerStudent(nn.Module):
    """Two-layer student of the single-index teacher–student model ("From spikes to heavy tails").

    ``f(x) = aᵀ σ(W x / √d) / √h`` with ``W = fc1.weight`` of shape ``(h, d)`` and
    ``a = fc2.weight`` of shape ``(1, h)``, all entries i.i.d. N(0, 1) at initialization (the
    paper's NTK-style scaling, after Wang et al. 2023).

    Parameters
    ----------
    d : int
        Input dimension.
    width : int, default=1500
        Hidden width ``h`` (the paper uses h = 1500, d = 1000, n = 2000).
    activation : {'tanh', 'relu', 'gelu', 'softplus', 'erf', 'linear'}, default='tanh'
        Student activation σ (the paper: tanh; its teacher uses softplus).
    train_first : bool, default=True
        Whether ``W`` is trained.
    train_second : bool, default=False
        Whether ``a`` is trained. The paper fixes it at its initial value during the optimizer
        steps (then fits it by ridge regression; see ``trainers.train.ridge_readout_losses``).
    dropout : float, default=0.0
        Dropout on the hidden features.
    """

    def __init__(self, d: int, *, width: int = 1500, activation: str = "tanh", train_first: bool = True,
                 train_second: bool = False, dropout: float = 0.0):
        super().__init__()
        _check_choice("activation", activation, _ACTIVATIONS)
        self.d, self.width, self.activation = int(d), int(width), activation
        self.fc1 = nn.Linear(self.d, self.width, bias=False)
        self.fc2 = nn.Linear(self.width, 1, bias=False)
        nn.init.normal_(self.fc1.weight)
        nn.init.normal_(self.fc2.weight)
        self.fc1.weight.requires_grad_(bool(train_first))
        self.fc2.weight.requires_grad_(bool(train_second))
        self.drop = nn.Dropout(_check_dropout(dropout))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden post-activations ``σ(W x / √d)`` of shape ``(batch, h)`` (the conjugate-kernel features)."""
        return _ACTIVATIONS[self.activation](self.fc1(x) / math.sqrt(self.d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions of shape ``(batch,)``."""
        return self.fc2(self.drop(self.features(x))).squeeze(-1) / math.sqrt(self.width)


class _CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head, self.dropout = n_head, dropout
        self.q_proj = nn.Linear(n_embd, n_embd)
        self.k_proj = nn.Linear(n_embd, n_embd)
        self.v_proj = nn.Linear(n_embd, n_embd)
        self.out_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        heads = [p(x).view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                 for p in (self.q_proj, self.k_proj, self.v_proj)]
        y = F.scaled_dot_product_attention(*heads, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, c))


class _Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = _CausalSelfAttention(n_embd, n_head, dropout)
        self.ln2 = nn.LayerNorm(n_embd)
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.proj = nn.Linear(4 * n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.proj(F.gelu(self.fc(self.ln2(x)))))


class CharGPT(nn.Module):
    """A small decoder-only character-level transformer (pre-norm GPT).

    Parameters
    ----------
    vocab_size : int
    block_size : int, default=64
        Context length in characters.
    n_layer : int, default=2
    n_head : int, default=4
    n_embd : int, default=128
    dropout : float, default=0.0
        Dropout on embeddings, attention weights and residual branches.

    Notes
    -----
    Input token ids ``(batch, t)`` with ``t ≤ block_size``; output logits ``(batch, t, vocab_size)``.
    Analyzable matrices: ``tok_emb``, ``pos_emb``, per block ``attn.{q,k,v,out}_proj``, ``fc``,
    ``proj``, and the untied ``head``.
    """

    def __init__(self, vocab_size: int, *, block_size: int = 64, n_layer: int = 2, n_head: int = 4,
                 n_embd: int = 128, dropout: float = 0.0):
        super().__init__()
        p = _check_dropout(dropout)
        self.block_size = int(block_size)
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(self.block_size, n_embd)
        self.drop = nn.Dropout(p)
        self.blocks = nn.ModuleList(_Block(n_embd, n_head, p) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.block_size}")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def _image_kwargs(info: Any) -> dict[str, Any]:
    c, h = info.input_shape[0], info.input_shape[1]
    return {"in_channels": c, "n_classes": info.n_classes, "input_size": h}


# name -> (class, function mapping a DataBundle to constructor defaults)
MODELS: dict[str, tuple[type[nn.Module], Callable[[Any], dict[str, Any]]]] = {
    "mlp3": (MLP3, lambda i: {"in_features": _flat_size(i.input_shape), "n_classes": i.n_classes}),
    "lenet5": (LeNet5, _image_kwargs),
    "minialexnet": (MiniAlexNet, lambda i: {"in_channels": i.input_shape[0], "n_classes": i.n_classes}),
    "student": (TwoLayerStudent, lambda i: {"d": _flat_size(i.input_shape)}),
    "char_gpt": (CharGPT, lambda i: {"vocab_size": i.vocab_size, "block_size": i.block_size}),
}
"""Registry: model name → (class, data-derived default keyword arguments)."""


def build_model(name: str, *, data: Any = None, defaults: Mapping[str, Any] | None = None,
                **kwargs: Any) -> nn.Module:
    """Build a registered model by name, or the user's model by import path.

    Parameters
    ----------
    name : {'mlp3', 'lenet5', 'minialexnet', 'student', 'char_gpt'} or str
        A registered name, or ``"package.module:factory"``: a function or ``nn.Module`` class,
        called with ``kwargs`` plus each of :func:`data_facts` and ``defaults`` that its signature
        names (``torchvision.models:resnet18`` with ``num_classes=10`` works the same way).
    data : DataBundle, optional
        When given, input shape, class count, vocabulary size and block size are taken from it
        (explicit ``kwargs`` win).
    defaults : mapping, optional
        Settings of the run a model may take (the trainer's ``dropout``): every registered model
        gets them, a user's factory only those its signature names; ``kwargs`` win.
    **kwargs
        Constructor arguments of the model class (``model_kwargs``).

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the registered names) or a model/data mismatch.
    TypeError
        A keyword the model does not accept (the message lists the ones it does).
    UserCodeError
        (a ``ValueError``) The import path does not import, its factory raised or returned no
        ``nn.Module``; one line starting with ``model:``.

    Examples
    --------
    >>> build_model("mlp3", in_features=64, width=32).fc2.weight.shape
    torch.Size([32, 32])
    >>> build_model("torch.nn:Linear", in_features=3, out_features=2).weight.shape
    torch.Size([2, 3])
    """
    if is_import_path(name):
        available = {**(data_facts(data) if data is not None else {}), **(defaults or {})}
        model = call_factory(resolve(name, field="model"), kwargs, available, field="model")
        if not isinstance(model, nn.Module):
            raise UserCodeError(f"model: {name} returned a {type(model).__name__}, not a torch.nn.Module")
        return model
    _check_choice("model", name, MODELS)
    cls, from_data = MODELS[name]
    params = dict(from_data(data)) if data is not None else {}
    if data is not None:
        _check_model_task(name, data)
    params.update(defaults or {})
    params.update(kwargs)
    try:
        return cls(**params)
    except TypeError as exc:
        import inspect

        accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
        raise TypeError(f"{name}: {exc}; accepted arguments: {', '.join(accepted)}") from None


def data_facts(data: Any) -> dict[str, Any]:
    """What a model factory may take from the data: the known ones of ``n_classes``, ``in_channels``,
    ``input_shape``, ``vocab_size``, ``block_size``.

    ``in_channels`` is the first entry of an image-like input shape ``(C, H, W)``, as
    ``DatasetPair.in_channels`` reads it; other shapes have none.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> data_facts(SimpleNamespace(input_shape=(1, 8, 8), n_classes=10, vocab_size=None, block_size=None))
    {'input_shape': (1, 8, 8), 'n_classes': 10, 'in_channels': 1}
    """
    facts = {"input_shape": tuple(getattr(data, "input_shape", None) or ()) or None,
             "n_classes": getattr(data, "n_classes", None), "vocab_size": getattr(data, "vocab_size", None),
             "block_size": getattr(data, "block_size", None)}
    if facts["input_shape"] is not None and len(facts["input_shape"]) == 3:
        facts["in_channels"] = int(facts["input_shape"][0])
    return {k: v for k, v in facts.items() if v is not None}


_MODEL_TASKS = {"mlp3": "classification", "lenet5": "classification", "minialexnet": "classification",
                "student": "regression", "char_gpt": "language_model"}


def _check_model_task(name: str, data: Any) -> None:
    want = _MODEL_TASKS[name]
    if data.task != want:
        raise ValueError(f"model {name!r} needs a {want} dataset, but {data.name!r} is a {data.task} dataset")
