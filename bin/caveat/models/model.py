"""The study's Basset-style model, its config and checkpoints.

``BassetModel(ModelConfig())`` is the Kathail et al. architecture:
(N, 4, 1344) → stem conv(288, k17) + pool 3 → six conv(k5) + pool 2 blocks
(288 → 512) → conv(256, k1) → 'dense' conv(768, k7) + dropout → dense(T) →
softplus → (N, T): the centre 192 bp bin's insertion count per task. With one
task it has 5,835,113 trainable parameters (≈ 5.84 M; convolutions without bias
because a batchnorm follows; batchnorm running statistics not counted).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..io import atomic_path
from .heads import SoftplusHead
from .trunks import BassetTrunk

CHECKPOINT_FORMAT = "caveat.basset/1"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`BassetModel` (defaults: the study's).

    Attributes
    ----------
    seq_len : int
        Input window length (bp).
    n_tasks : int
        Outputs (cell types).
    filters : int
        Width of the stem and first tower block.
    filters_max : int
        Width of the last tower block.
    tower_blocks : int
        Conv(k5) + pool 2 blocks.
    bottleneck : int
        Width of the conv(k1) after the tower.
    dense : int
        Width of the dense layer (a valid conv over the remaining positions).
    dropout : float
        Dropout after the dense layer.
    """

    seq_len: int = 1344
    n_tasks: int = 1
    filters: int = 288
    filters_max: int = 512
    tower_blocks: int = 6
    bottleneck: int = 256
    dense: int = 768
    dropout: float = 0.2

    @classmethod
    def from_params(cls, params: dict, n_tasks: int) -> "ModelConfig":
        """Config from pipeline params (``window_size``, ``model_*``)."""
        return cls(seq_len=int(params.get("window_size", 1344)), n_tasks=int(n_tasks),
                   filters=int(params.get("model_filters", 288)),
                   filters_max=int(params.get("model_filters_max", 512)),
                   tower_blocks=int(params.get("model_tower_blocks", 6)),
                   bottleneck=int(params.get("model_bottleneck", 256)),
                   dense=int(params.get("model_dense", 768)),
                   dropout=float(params.get("model_dropout", 0.2)))


class BassetModel(nn.Module):
    """Basset-style CNN: one-hot DNA (N, 4, seq_len) → softplus counts (N, n_tasks)."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.trunk = BassetTrunk(seq_len=c.seq_len, filters=c.filters, filters_max=c.filters_max,
                                 tower_blocks=c.tower_blocks, bottleneck=c.bottleneck, dense=c.dense,
                                 dropout=c.dropout)
        self.head = SoftplusHead(c.dense, c.n_tasks)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, 4, seq_len) one-hot → (N, n_tasks) non-negative predictions."""
        return self.head(self.trunk(x))


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set every BatchNorm1d's running statistics to those of one forward pass on ``x``.

    For untrained models in tests and benchmarks: with statistics of real inputs
    the activations keep a trained model's scale through depth (fresh statistics
    let them grow layer by layer). Returns ``model`` in eval mode.

    Parameters
    ----------
    x : Tensor
        Inputs, shape (N, 4, L) one-hot for the models here.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.reset_running_stats()
            m.momentum = None                                   # cumulative average: this batch only
    model.train()
    model(x)
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (weights, biases, batchnorm scale/shift; not running stats)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_checkpoint(model: BassetModel, path: str | Path, *, cell_types: list[str],
                    extra: dict | None = None) -> Path:
    """Write ``model.pt``: state dict, architecture config and cell types, atomically.

    The file is serialised in memory first, so its bytes do not depend on the
    temporary file name.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"format": CHECKPOINT_FORMAT, "config": asdict(model.config), "cell_types": list(cell_types),
           "state_dict": state, "extra": dict(extra or {})}
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> BassetModel:
    """Load a model written by :func:`save_checkpoint`, in eval mode.

    Returns
    -------
    BassetModel
        With attributes ``cell_types`` (list of str, one per output) and
        ``extra`` (dict saved with it).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "model checkpoint not found", "run the train step first")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise InputError(path, f"not a readable checkpoint: {e}", "re-run the train step") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, "not a caveat model checkpoint", "use a model.pt written by `caveat train`")
    known = {f.name for f in fields(ModelConfig)}
    model = BassetModel(ModelConfig(**{k: v for k, v in obj["config"].items() if k in known}))
    model.load_state_dict(obj["state_dict"])
    model.cell_types = list(obj["cell_types"])
    model.extra = dict(obj.get("extra", {}))
    return model.to(device).eval()
