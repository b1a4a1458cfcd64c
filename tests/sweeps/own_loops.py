"""Users' own training loops for the function-trainable tests (``trainable: tests.sweeps.own_loops:...``).

Importable on the Ray workers because the tests run from the repository root, which Ray puts on
every worker's ``sys.path``.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset


def _digits() -> tuple[TensorDataset, tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    return TensorDataset(x[:1200], y[:1200]), (x[1200:], y[1200:])


def train(config: dict, session) -> None:
    """A plain loop: DataLoader, SGD, monitor every ``monitor_every`` steps, report test accuracy,
    checkpoint before each report, resume from the last checkpoint."""
    torch.manual_seed(config["seed"])
    torch.set_num_threads(1)
    train_set, (x_test, y_test) = _digits()
    width = config["width"]
    model = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                torch.nn.ReLU(), torch.nn.Linear(width, 10)).to(session.device)
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    step = 0
    state = session.load_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    loader = DataLoader(train_set, batch_size=config["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(config["seed"] + step))
    while step < config["steps"]:
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % config["monitor_every"] == 0 or step == config["steps"]:
                session.monitor(model, step)
                with torch.no_grad():
                    acc = (model(x_test).argmax(1) == y_test).float().mean().item()
                session.save_checkpoint({"model": model.state_dict(), "opt": opt.state_dict(), "step": step})
                session.report({"test_acc": acc, "train_loss": loss.detach()}, step)
                pause = config.get("pause_s", 0)
                if pause:  # leaves time to kill the worker in the resume test
                    import time

                    time.sleep(pause)
            if step >= config["steps"]:
                break


def misbehave(config: dict, session) -> None:
    """One bad habit per ``config["mode"]``."""
    mode = config["mode"]
    model = torch.nn.Linear(40, 40)
    if mode == "never_reports":
        session.monitor(model, 1)
    elif mode == "raises":
        session.report({"test_acc": 0.5}, 1)
        raise RuntimeError("the user's loop broke at step 2")
    elif mode == "text_metric":
        session.report({"test_acc": "high"}, 1)
    elif mode == "not_a_module":
        session.monitor(model.state_dict(), 1)


not_a_function = 3


def wrong_signature(config: dict) -> None:
    """Takes no session."""


def lightning_train(config: dict, session) -> None:
    """A Lightning loop: the user adds only ``SpectralCallback``; inside the trial it monitors through
    the session every ``monitor_every`` steps and reports the validation's ``test_acc``."""
    import lightning.pytorch as pl

    from htsweep.integrations.lightning import SpectralCallback

    class Digits(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            width = config["width"]
            self.net = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                           torch.nn.ReLU(), torch.nn.Linear(width, 10))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("test_acc", (self.net(x).argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=config["lr"], momentum=0.9)

    torch.manual_seed(config["seed"])
    torch.set_num_threads(1)
    train_set, test = _digits()
    every = config["monitor_every"]
    trainer = pl.Trainer(max_steps=config["steps"], val_check_interval=every, check_val_every_n_epoch=None,
                         callbacks=[SpectralCallback(every_n_steps=every)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         accelerator="cpu", devices=1)
    trainer.fit(Digits(), DataLoader(train_set, batch_size=config["batch_size"], shuffle=True,
                                     generator=torch.Generator().manual_seed(config["seed"])),
                DataLoader(TensorDataset(*test), batch_size=len(test[0])))
