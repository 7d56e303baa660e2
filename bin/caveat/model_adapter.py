"""Bring any model: a ``torch.nn.Module`` or TorchScript file mapping one-hot
(N, 4, L) to (N, T) becomes a scorer.

The contract for an outside model is small:

* input: float one-hot DNA, shape (N, 4, L), channels A, C, G, T; an N base is
  an all-zero column (:func:`caveat.onehot.one_hot`);
* output: one non-negative prediction per task for the window's centre bin,
  shape (N, T) (counts or rates: REF/(REF+ALT) and log2 fold changes are taken
  on them);
* optional: a method ``ism_layers()`` returning the ordered list of layers
  whose composition is ``forward``. The exact fast ISM path
  (:mod:`caveat.fast_ism`) uses it. Without it the layer list is derived
  from the module tree (leaf modules in order, a flatten before the first
  linear) and used only if it reproduces ``forward`` on random input; else
  (and always for TorchScript) the plain path runs — same numbers, slower.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import InputError
from .log import get_logger

log = get_logger("model_adapter")


def _leaves(module: nn.Module) -> list[nn.Module]:
    kids = list(module.children())
    if not kids:
        return [module]
    out: list[nn.Module] = []
    for k in kids:
        out.extend(_leaves(k))
    return out


def sequential_layers(model: nn.Module, seq_len: int, *, check: bool = True) -> list[nn.Module] | None:
    """Ordered layers whose composition equals ``model.forward``, or None.

    Parameters
    ----------
    model : nn.Module
        In eval mode.
    seq_len : int
        Input length L for the check.
    check : bool
        Verify on two random one-hot sequences (relative error < 1e-5).

    Returns
    -------
    list of nn.Module or None
    """
    if isinstance(model, torch.jit.ScriptModule):
        return None
    if hasattr(model, "ism_layers"):
        layers = list(model.ism_layers())
    else:
        layers = []
        for m in _leaves(model):
            if isinstance(m, nn.Linear) and not any(isinstance(x, nn.Flatten) for x in layers):
                layers.append(nn.Flatten(1))          # a head flattens (N, C, 1) before its dense layer
            layers.append(m)
    if not check:
        return layers
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 4, (2, seq_len), generator=g)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.nn.functional.one_hot(codes, 4).transpose(1, 2).float().to(dev)
    with torch.inference_mode():
        try:
            want = model(x)
            got = x
            for m in layers:
                got = m(got)
        except Exception:  # the derived chain does not even run: not sequential
            return None
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
        return None
    return layers


class ModelAdapter:
    """A model as a batch predictor (N, 4, L) → (N, T).

    Parameters
    ----------
    model : nn.Module or torch.jit.ScriptModule
    seq_len : int
        Input length the model expects.
    task_names : list of str, optional
        One per output; default ``model.cell_types`` or ``task0…``.
    device : str or torch.device
    batch_size : int
        Sequences per forward pass.

    Attributes
    ----------
    layers : list of nn.Module or None
        The verified sequential decomposition (fast path available when set).
    n_tasks : int
    """

    def __init__(self, model: nn.Module, seq_len: int, *, task_names: list[str] | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 32, source: str = "model"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.source = str(source)
        self.layers = sequential_layers(self.model, self.seq_len)
        codes = torch.randint(0, 4, (1, self.seq_len), generator=torch.Generator().manual_seed(1))
        probe = torch.nn.functional.one_hot(codes, 4).transpose(1, 2).float().to(self.device)
        with torch.inference_mode():
            try:
                out = self.model(probe)
            except Exception as e:
                raise InputError(source, f"model fails on a (1, 4, {seq_len}) one-hot input: {e}",
                                 "the model must map (N, 4, L) one-hot to (N, T); pass its input length L (--seq-len)") from None
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 1:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise InputError(source, f"model output has shape {shape}, expected (N, T)",
                             "wrap the model so that it returns the centre bin's prediction per task, (N, T)")
        self.n_tasks = int(out.shape[1])
        names = task_names if task_names is not None else getattr(model, "cell_types", None)
        if names is None:
            names = [f"task{i}" for i in range(self.n_tasks)]
        if len(names) != self.n_tasks:
            raise InputError(source, f"{len(names)} task names for {self.n_tasks} model outputs",
                             "give one task name (cell type) per model output")
        self.task_names = [str(n) for n in names]

    @torch.inference_mode()
    def predict(self, x: Tensor) -> Tensor:
        """Predictions for one-hot windows.

        Parameters
        ----------
        x : Tensor
            Shape (N, 4, L), on any device.

        Returns
        -------
        Tensor
            float32, shape (N, T), on the adapter's device.
        """
        outs = [self.model(x[i:i + self.batch_size].to(self.device)).float()
                for i in range(0, x.shape[0], self.batch_size)]
        return torch.cat(outs) if outs else torch.zeros(0, self.n_tasks, device=self.device)


def load_model(path: str | Path, *, seq_len: int = 1344, task_names: list[str] | None = None,
               device: str | torch.device = "cpu", batch_size: int = 32) -> ModelAdapter:
    """Open a caveat checkpoint (``model.pt`` from ``caveat train``) or a TorchScript file.

    Parameters
    ----------
    path : path
    seq_len : int
        Input length for TorchScript models (caveat checkpoints carry their own).
    task_names : list of str, optional
        Output names for TorchScript models (default ``task0…``).

    Returns
    -------
    ModelAdapter
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "model file not found", "run the train step, or pass an existing model file")
    try:
        model = torch.jit.load(str(path), map_location="cpu")
        log.info("%s: TorchScript model (plain scoring path)", path.name)
    except Exception:
        from .models import load_checkpoint

        model = load_checkpoint(path)
        seq_len = int(model.config.seq_len)
    return ModelAdapter(model, seq_len, task_names=task_names, device=device, batch_size=batch_size,
                        source=str(path))


__all__ = ["ModelAdapter", "load_model", "sequential_layers"]
