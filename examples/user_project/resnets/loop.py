"""Your own training loop in a sweep: ``trainable: "resnets.loop:train"`` (specs/own_loop.yaml).

htsweep calls ``train(config, session)`` in every trial, ``config`` being the spec's ``train``
section with the trial's sampled hyperparameters applied. The loop is ordinary PyTorch (the
project's own TinyResNet and augmented digit Datasets, a DataLoader, SGD); the session adds the
spectral monitoring (the sweep's shared ESD actor), the reports that drive Optuna and MLflow, and
checkpoints a killed trial resumes from.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from resnets.data import digits
from resnets.nets import tiny_resnet


def evaluate(model: torch.nn.Module, data: DataLoader, device: str) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in data:
            correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
            total += len(y)
    model.train()
    return correct / total


def train(config: dict, session) -> None:
    torch.manual_seed(config["seed"])
    torch.set_num_threads(config.get("threads", 1))
    train_set, test_set = digits(seed=config["seed"], augment=True)
    model = tiny_resnet(10, 1, width=config["width"]).to(session.device)
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9, weight_decay=config["weight_decay"])
    step = 0
    state = session.load_checkpoint()  # None on a fresh start; the last saved state after a kill or retry
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    test = DataLoader(test_set, batch_size=256)
    every = config["monitor_every"]
    while step < config["steps"]:
        # a new shuffle per resumption point, so a resumed trial does not replay the batches it saw
        loader = DataLoader(train_set, batch_size=config["batch_size"], shuffle=True,
                            generator=torch.Generator().manual_seed(config["seed"] * 100_003 + step))
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x.to(session.device)), y.to(session.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % every == 0 or step == config["steps"]:
                session.monitor(model, step)  # α, phase, ... per layer, into MLflow at this step
                session.save_checkpoint({"model": model.state_dict(), "opt": opt.state_dict(), "step": step})
                session.report({"test_acc": evaluate(model, test, session.device), "train_loss": loss.item()}, step)
            if step >= config["steps"]:
                break
