"""Synthetic scenes with exact ground truth, written as BOP-format datasets: the built-in
procedural objects, textures and backgrounds (``procedural.py``), the scene generator and
``coop-ros synth`` (``scenes.py``: layouts, rendering, ground truth) and its realistic preset
(``realistic.py``: table-top scenes, lights, camera and depth-sensor models). The files are
written with :mod:`coop_ros.bop.writer`; metres and pixels throughout, millimetres on disk."""
