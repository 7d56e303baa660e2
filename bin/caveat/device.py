"""Torch device helpers shared by the model steps (train, predict, score_variants): which
device a ``*_device`` param names, and bf16 autocast. Neutral, so no step imports another."""

from __future__ import annotations

import contextlib

import torch

from .errors import InputError


def resolve_device(name: str = "auto", param: str = "train_device") -> torch.device:
    """``auto`` → CUDA if available, else MPS, else CPU; otherwise the named device.
    ``param`` names the param in errors."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError("params", f"{param} {name!r} is not a torch device", "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("params", f"{param} {name!r} but no CUDA GPU is visible", f"use {param}: auto or cpu")
    return dev


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; a no-op elsewhere."""
    if bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


__all__ = ["autocast", "resolve_device"]
