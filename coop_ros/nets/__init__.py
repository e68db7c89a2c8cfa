"""Co-op networks on a CroCo v2 backbone (plain torch; no rclpy, no torchvision / timm).

* :mod:`~coop_ros.nets.rope`: 2D RoPE (frequency 100), :mod:`~coop_ros.nets.blocks`: ViT blocks.
* :mod:`~coop_ros.nets.croco`: :class:`CroCoNet` (patch embed 16 px, siamese encoder, cross-attention
  decoder) and its configurations (``large``, ``selection``, ``tiny``).
* :mod:`~coop_ros.nets.heads`: coarse model (patch class + offset), DPT refiner (Laplace flow,
  certainty, sensitivity), correspondence decoding, confidence weights.
* :mod:`~coop_ros.nets.selection`: hypothesis scorer.
* :mod:`~coop_ros.nets.checkpoint`: own checkpoint format and CroCo v2 weight import.
"""
from coop_ros.nets.checkpoint import (ARCHS, build_model, load_checkpoint, load_croco_weights,
                                      model_config, read_checkpoint, save_checkpoint)
from coop_ros.nets.croco import CONFIGS, CroCoConfig, CroCoNet, CroCoOutput, Encoding, get_config
from coop_ros.nets.heads import (CoarseHead, CoarseNet, CoarseOutput, Correspondences, DPTRefinerHead,
                                 RefinerNet, RefinerOutput, confidence_weights, dpt_hooks,
                                 logits_to_correspondences, patch_targets, query_patch_centres,
                                 template_scores)
from coop_ros.nets.rope import RoPE2D
from coop_ros.nets.selection import SelectionNet

__all__ = [
    "ARCHS", "CONFIGS", "CoarseHead", "CoarseNet", "CoarseOutput", "Correspondences", "CroCoConfig",
    "CroCoNet", "CroCoOutput", "DPTRefinerHead", "Encoding", "RefinerNet", "RefinerOutput", "RoPE2D",
    "SelectionNet", "build_model", "confidence_weights", "dpt_hooks", "get_config",
    "load_checkpoint", "load_croco_weights", "logits_to_correspondences", "model_config",
    "patch_targets", "query_patch_centres", "read_checkpoint", "save_checkpoint", "template_scores",
]
