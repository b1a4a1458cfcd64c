"""The shipped char-level corpus as fixed-length windows for the framework examples (GPT-2 from a config)."""

from __future__ import annotations

import torch

from htsweep.trainers.data import text


class CharWindows(torch.utils.data.Dataset):
    """Windows of ``block`` character ids of htsweep's shipped corpus (``trainers/corpus``), for next-
    character prediction: item ``i`` is ``{"input_ids": ids, "labels": ids}`` (GPT-2 shifts the labels)."""

    def __init__(self, *, block: int = 64, split: str = "train", n: int = 4096, seed: int = 0) -> None:
        bundle = text(block_size=block)
        self.vocab = bundle.vocab
        ids = bundle.x_train if split == "train" else bundle.x_test
        g = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, len(ids) - block, (n,), generator=g)
        self.windows = torch.stack([ids[s:s + block] for s in starts.tolist()])

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.windows[i], "labels": self.windows[i]}


def gpt2(vocab_size: int, *, n_layer: int = 2, n_embd: int = 128, block: int = 64) -> torch.nn.Module:
    """A small GPT-2 built from a config (no download)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=block, n_embd=n_embd, n_layer=n_layer,
                                      n_head=4, bos_token_id=0, eos_token_id=0))


def print_layers(snapshot) -> None:
    """The last analysis, one line per layer."""
    for row in snapshot.rows:
        print(f"  {row['name']:<34} {row['kind']:<9} alpha {row['alpha']:6.2f}  {row['phase']}")
