"""Deployment: re-parameterisation into the inference form, and ONNX export."""

from .reparam import reparameterize

__all__ = ["reparameterize"]
