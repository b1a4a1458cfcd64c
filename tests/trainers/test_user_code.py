"""User code by import path: resolve, call a factory, and a one-line error for each way it fails."""

from __future__ import annotations

import pytest

from htsweep.trainers.user_code import UserCodeError, call_factory, is_import_path, resolve


@pytest.mark.parametrize("value, expected", [
    ("mlp3", False), ("char_gpt", False), ("digits", False), ("", False), (None, False), (3, False),
    ("pkg.mod:fn", True), ("pkg.mod.fn", True), ("pkg:Cls.build", True), ("torchvision.models:resnet18", True),
    ("pkg.mod:", False), (":fn", False), ("pkg..mod:fn", False), ("pkg.mod:fn:x", False), ("1pkg.mod", False),
])
def test_is_import_path(value, expected):
    assert is_import_path(value) is expected


def test_resolve_both_spellings_and_dotted_attribute(user_pkg):
    mod = user_pkg("nets", """
        class Net:
            @staticmethod
            def build():
                return "built"
        def factory():
            return "made"
    """)
    assert resolve(f"{mod}:factory", field="model")() == "made"
    assert resolve(f"{mod}.factory", field="model")() == "made"
    assert resolve(f"{mod}:Net.build", field="model")() == "built"


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_module_not_found_names_field_and_module():
    with pytest.raises(UserCodeError) as info:
        resolve("no_such_pkg_xyz.nets:tiny", field="model")
    msg = _one_line(info)
    assert msg.startswith("model: ") and "no module named 'no_such_pkg_xyz'" in msg


def test_import_that_raises_is_not_reported_as_not_found(user_pkg):
    boom = user_pkg("boom", "raise RuntimeError('cannot load weights\\nsecond line')\n")
    with pytest.raises(UserCodeError) as info:
        resolve(f"{boom}:f", field="dataset")
    msg = _one_line(info)
    assert msg.startswith("dataset: importing") and "RuntimeError: cannot load weights second line" in msg
    # A missing dependency *inside* the user's module is that module raising, not "module not found".
    dep = user_pkg("dep", "import no_such_dependency_xyz\n")
    with pytest.raises(UserCodeError) as info:
        resolve(f"{dep}:f", field="model")
    msg = _one_line(info)
    assert "raised ModuleNotFoundError" in msg and "no_such_dependency_xyz" in msg


def test_missing_attribute_suggests_the_close_name(user_pkg):
    mod = user_pkg("nets", "def tiny_resnet():\n    pass\n")
    with pytest.raises(UserCodeError) as info:
        resolve(f"{mod}:tiny_resnt", field="model")
    msg = _one_line(info)
    assert "has no attribute 'tiny_resnt'" in msg and "did you mean 'tiny_resnet'" in msg


def test_malformed_path():
    with pytest.raises(UserCodeError, match=r"^trainable: 'train' is not an import path"):
        resolve("train", field="trainable")


def test_call_factory_passes_only_accepted_names_and_kwargs_win():
    seen = {}

    def factory(width, *, n_classes, in_channels=1, **extra):
        seen.update(width=width, n_classes=n_classes, in_channels=in_channels, extra=extra)
        return "net"

    out = call_factory(factory, {"width": 4, "in_channels": 7},
                       {"n_classes": 10, "in_channels": 3, "vocab_size": 65, "block_size": 8}, field="model")
    # vocab_size/block_size go nowhere: **extra is a catch-all, not a declared parameter.
    assert out == "net" and seen == {"width": 4, "n_classes": 10, "in_channels": 7, "extra": {}}


def test_call_factory_on_a_class():
    class Net:
        def __init__(self, n_classes: int):
            self.n_classes = n_classes

    assert call_factory(Net, {}, {"n_classes": 5, "seed": 0}, field="model").n_classes == 5


def test_call_factory_wraps_what_the_factory_raises():
    def factory(depth):
        raise ValueError(f"depth must be even,\n got {depth}")

    with pytest.raises(UserCodeError) as info:
        call_factory(factory, {"depth": 3}, {"seed": 1}, field="model")
    msg = _one_line(info)
    assert msg.startswith("model: ") and "factory(depth) raised ValueError: depth must be even, got 3" in msg
    with pytest.raises(UserCodeError, match=r"^dataset: .*raised TypeError"):
        call_factory(factory, {"width": 3}, {}, field="dataset")  # unexpected keyword
    with pytest.raises(UserCodeError, match=r"^model: .*is not callable"):
        call_factory(42, {}, {}, field="model")
