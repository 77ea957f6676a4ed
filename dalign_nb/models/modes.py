"""Switching a model to eval mode for a measurement, and back."""

from __future__ import annotations

import contextlib

from torch import nn

__all__ = ["evaluating"]


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Inside the block ``model`` is in eval mode; on leaving (an exception included) every
    submodule gets back the mode it had, so a model handed to a measurement, a viewer or
    validation comes back as it was (training, or partly frozen)."""
    modes = [(m, m.training) for m in model.modules()]  # per module: a frozen part stays frozen
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
