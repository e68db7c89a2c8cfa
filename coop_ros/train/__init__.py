"""Training of Co-op's networks from synthetic BOP scenes (``coop-ros train``).

* :mod:`~coop_ros.train.config`: typed configuration (YAML), validated once.
* :mod:`~coop_ros.train.pairs`: coarse / refiner / selection pairs with exact ground truth.
* :mod:`~coop_ros.train.losses`: CE + L1 (coarse), Laplace NLL + BCE + disentangled pose loss
  through the differentiable LM PnP (refiner), BCE (selection).
* :mod:`~coop_ros.train.augment`: MegaPose-style photometric augmentation.
* :mod:`~coop_ros.train.loop`: AdamW + warm-up / step decay, clipping, checkpoints, resume, DDP.
* :mod:`~coop_ros.train.shapes`: training / held-out synthetic sets with disjoint shapes.
"""
from coop_ros.train.config import TrainConfig, load_config
from coop_ros.train.loop import train

__all__ = ["TrainConfig", "load_config", "train"]
