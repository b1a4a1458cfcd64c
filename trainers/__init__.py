"""Models, datasets, optimizers and the training loop with spectral-monitoring callbacks.

Knows nothing of Ray or MLflow: a trial plugs its monitor and reporters in as callbacks.
"""

from htsweep.trainers.callbacks import Callback, EarlyStopping, MetricsHistory
from htsweep.trainers.config import TrainConfig, resolve_device
from htsweep.trainers.data import DATASETS, Batcher, DataBundle, load_dataset
from htsweep.trainers.datasets import DatasetPair, from_datasets
from htsweep.trainers.loader import LoaderBatcher
from htsweep.trainers.models import MLP3, MODELS, CharGPT, LeNet5, MiniAlexNet, TwoLayerStudent, build_model
from htsweep.trainers.monitor import InProcessAnalyzer, SpectralMonitor, SpectralSnapshot
from htsweep.trainers.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_scheduler
from htsweep.trainers.teacher_student import kernel_target_alignment, ridge_readout_losses, teacher_alignment
from htsweep.trainers.train import Trainer

__all__ = [
    "DATASETS",
    "MODELS",
    "OPTIMIZERS",
    "SCHEDULES",
    "MLP3",
    "Batcher",
    "Callback",
    "CharGPT",
    "DataBundle",
    "DatasetPair",
    "EarlyStopping",
    "InProcessAnalyzer",
    "LeNet5",
    "LoaderBatcher",
    "MetricsHistory",
    "MiniAlexNet",
    "SpectralMonitor",
    "SpectralSnapshot",
    "TrainConfig",
    "Trainer",
    "TwoLayerStudent",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "from_datasets",
    "kernel_target_alignment",
    "load_dataset",
    "resolve_device",
    "ridge_readout_losses",
    "teacher_alignment",
]
