"""Deployment: re-parameterisation into the inference form, and ONNX export."""

from ..nn.reparam import reparameterize

__all__ = ["reparameterize"]
