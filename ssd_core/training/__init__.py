"""Training in the library: `fit` runs a whole training run; its parts are

- `schedule`: the warm-up multistep learning rate (`WarmupPiecewiseDecay`);
- `regularisation`: weight decay and the bias learning rate, by parameter role;
- `trainer`: the replicated train step and the checkpoint (`Trainer`);
- `summaries`: TensorBoard scalars without the tensorboard package;
- `fit`: strategy, mixed precision, optimizer, resume, checkpoint/log/validation cadence.

    from ssd_core.training import DataSpec, FitSettings, fit
    fit(SSDConfig.preset("ssd7"), DataSpec("voc:data/shapes", "train", val_split="test"),
        Path("runs/ssd7"), FitSettings(steps=10_000, batch_size=8, optimizer="adam"))
"""

from ssd_core.training.fit import DataSpec, FitSettings, fit
from ssd_core.training.regularisation import parameter_roles, weight_decay_term
from ssd_core.training.schedule import WarmupPiecewiseDecay
from ssd_core.training.trainer import NonFiniteLossError, Trainer

__all__ = [
    "DataSpec",
    "FitSettings",
    "NonFiniteLossError",
    "Trainer",
    "WarmupPiecewiseDecay",
    "fit",
    "parameter_roles",
    "weight_decay_term",
]
