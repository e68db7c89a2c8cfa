"""Rendering: the moderngl/EGL mesh renderer (rgb, metric depth, mask, object coordinates) and
the template bank of Co-op's coarse stage (rendered once per mesh, cached on disk)."""
from coop_ros.render.renderer import Light, RenderOutput, Renderer, projection_from_K
from coop_ros.render.templates import TemplateBank, build_template_bank, template_camera

__all__ = ["Light", "RenderOutput", "Renderer", "projection_from_K", "TemplateBank",
           "build_template_bank", "template_camera"]
