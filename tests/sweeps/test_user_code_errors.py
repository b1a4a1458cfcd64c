"""Bad user code named in a spec: ``htsweep run`` prints one line naming the spec field and the
cause and exits 2 before any trial starts (no sweep directory, no Ray)."""

from __future__ import annotations

import sys
import textwrap
import uuid

import pytest
from sweep_helpers import tiny_spec, write_spec
from typer.testing import CliRunner

from htsweep.sweeps.cli import app

CODE = """
import torch
from torch import nn
from torch.utils.data import TensorDataset

def net(n_classes, in_channels):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, n_classes))

def wrong_shape(n_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(10, n_classes))

def raises(n_classes, depth=3):
    raise ValueError(f"depth {depth} must be even")

def not_a_module():
    return "a string"

def pair(seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(40, 1, 8, 8, generator=g), torch.arange(40) % 3
    return TensorDataset(x[:30], y[:30]), TensorDataset(x[30:], y[30:])

def single():
    return TensorDataset(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))

def triples():
    t = TensorDataset(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), torch.zeros(4))
    return t, t
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder (the working directory) with its package; the spec lives in specs/."""
    pkg = f"proj_{uuid.uuid4().hex[:8]}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "code.py").write_text(textwrap.dedent(CODE))
    (tmp_path / "specs").mkdir()
    monkeypatch.chdir(tmp_path)
    saved = list(sys.path)
    yield tmp_path, pkg
    sys.path[:] = saved
    for mod in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[mod]


@pytest.mark.parametrize("model, dataset, expected", [
    ("nope_{u}.nets:net", "{p}.code:pair", "model: cannot import 'nope_{u}.nets:net': no module named 'nope_{u}'"),
    ("{p}.code:nett", "{p}.code:pair", "model: '{p}.code' has no attribute 'nett' (did you mean 'net'?)"),
    ("{p}.code:raises", "{p}.code:pair", "model: raises(n_classes) raised ValueError: depth 3 must be even"),
    ("{p}.code:not_a_module", "{p}.code:pair", "model: {p}.code:not_a_module returned a str, not a torch.nn.Module"),
    ("{p}.code:net", "{p}.code:single", "dataset: {p}.code:single must return a (train, test) pair"),
    ("{p}.code:net", "{p}.code:triples", "dataset: {p}.code:triples: items of train must be (x, y) pairs"),
    ("{p}.code:wrong_shape", "{p}.code:pair", "model: {p}.code:wrong_shape fails on a batch of {p}.code:pair "
                                              "(x of shape (8, 1, 8, 8), torch.float32): RuntimeError: mat1 and "
                                              "mat2 shapes cannot be multiplied"),
    ("mlp3", "{p}.code:triples", "dataset: {p}.code:triples: items of train must be (x, y) pairs"),
])
def test_bad_user_code_is_one_line_and_exit_2_before_any_trial(project, model, dataset, expected):
    root, pkg = project
    names = {"p": pkg, "u": uuid.uuid4().hex[:6]}
    spec = tiny_spec("bad", model=model.format(**names), dataset=dataset.format(**names),
                     train={"model_kwargs": {}})
    path = write_spec(root / "specs" / "bad.yaml", spec)
    result = CliRunner().invoke(app, ["run", str(path.relative_to(root))])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert result.output.rstrip().endswith(errors[0])  # the error is the last line: nothing ran after it
    assert expected.format(**names) in errors[0]
    assert not (root / "runs").exists()  # no sweep directory: nothing started


def test_good_user_code_passes_the_driver_check(project):
    from htsweep.sweeps.spec import SweepSpec
    from htsweep.sweeps.tune_runner import check_train_config

    root, pkg = project
    spec = SweepSpec.from_dict(tiny_spec("good", model=f"{pkg}.code:net", dataset=f"{pkg}.code:pair",
                                         train={"model_kwargs": {}}))
    sys.path.insert(0, str(root))  # run_sweep's import_on_driver does this for the CLI
    check_train_config(spec)


def test_the_example_user_project_passes_the_driver_check(monkeypatch):
    from sweep_helpers import REPO

    from htsweep.sweeps.code_paths import code_roots, import_on_driver
    from htsweep.sweeps.spec import SweepSpec
    from htsweep.sweeps.tune_runner import check_train_config

    project = REPO / "examples" / "user_project"
    monkeypatch.chdir(project)
    saved = list(sys.path)
    try:
        import_on_driver(code_roots("specs/resnet_digits.yaml"))
        check_train_config(SweepSpec.from_yaml("specs/resnet_digits.yaml"))  # builds it, one batch through
    finally:
        sys.path[:] = saved
        for mod in [m for m in sys.modules if m == "resnets" or m.startswith("resnets.")]:
            del sys.modules[mod]
