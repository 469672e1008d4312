"""Relevance of every sample of a window: layer-wise relevance propagation (our own,
through residual additions) and the Captum methods.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from captum.attr import DeepLift, InputXGradient, IntegratedGradients
from torch import Tensor, nn

from wearssl.config.explain import (
    Attribution,
)
from wearssl.explain.network import Residual
from wearssl.models.harnet import (
    Downsample,
)

_AFFINE_LAYERS = (nn.Conv1d, nn.Linear, Downsample, nn.BatchNorm1d)


def _stabilised(z: Tensor, epsilon: float) -> Tensor:
    """``z + e * sign(z)`` (sign(0) = 1) with ``e`` = ``epsilon`` times the root mean square
    of ``z`` over each window's units: one relative epsilon suits every layer, whatever
    its activations' scale. Never zero where ``z`` has any non-zero unit, and |.| only grows.
    """
    units = tuple(range(1, z.dim()))
    scale = z.detach().square().mean(dim=units, keepdim=True).sqrt()
    step = epsilon * scale + torch.finfo(z.dtype).tiny
    return torch.where(z >= 0, z + step, z - step)


def _epsilon_rule(layer: nn.Module, a: Tensor, relevance: Tensor, epsilon: float) -> Tensor:
    """``R_i = a_i * sum_j w_ji * R_j / stab(z_j)`` for an affine layer ``z = layer(a)``.

    The sum is the gradient of ``z`` against the constant ``R / stab(z)``, so one rule
    serves every affine layer: convolutions (circular padding included), fully connected
    layers, the fixed anti-aliasing filter and batch norm in eval mode (``z = w a + b``
    per channel). A bias keeps its share ``b_j R_j / stab(z_j)``, the stabiliser the rest.
    """
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        z = layer(a)
        (weighted,) = torch.autograd.grad(z, a, grad_outputs=relevance / _stabilised(z, epsilon))
    return a.detach() * weighted


def _relevance(module: nn.Module, a: Tensor, relevance: Tensor, epsilon: float) -> Tensor:
    """Relevance of ``module``'s input ``a`` given the relevance of its output."""
    if isinstance(module, nn.Sequential):
        inputs = []
        with torch.no_grad():
            for layer in module:
                inputs.append(a)
                a = layer(a)
        for layer, layer_input in zip(reversed(module), reversed(inputs), strict=True):
            relevance = _relevance(layer, layer_input, relevance, epsilon)
        return relevance
    if isinstance(module, Residual):
        with torch.no_grad():
            branch = module.branch(a)
            share = relevance / _stabilised(a + branch, epsilon)
        return a * share + _relevance(module.branch, a, branch * share, epsilon)
    if isinstance(module, _AFFINE_LAYERS):
        return _epsilon_rule(module, a, relevance, epsilon)
    if isinstance(module, nn.ReLU):
        return relevance
    if isinstance(module, nn.Flatten):
        return relevance.reshape(a.shape)
    raise TypeError(f"LRP has no rule for a {type(module).__name__} layer")


def lrp(network: nn.Module, windows: Tensor, target: Tensor, epsilon: float = 0.1) -> Tensor:
    """LRP-epsilon relevance ``(N, 3, L)`` of the ``target`` class's output of ``network``.

    Rules: the epsilon rule (:func:`_epsilon_rule`, relative epsilon, see
    :func:`_stabilised`) for every affine layer, batch norm included; ReLU passes
    relevance through; a residual sum ``y = x + f`` splits it in proportion to the two
    terms, ``R_x = x R_y / y`` and ``R_f = f R_y / y``, so nothing is counted twice.
    Relevance is conserved (the input's sums to the explained output) up to what the
    biases and batch-norm shifts keep and what the stabiliser absorbs.

    Batch norm cannot be folded into a convolution here (in a pre-activation block it
    follows a residual sum, and a ReLU separates it from the next convolution). Passing
    relevance through it unchanged would conserve it exactly, but relevance computed
    from the shifted output is then divided by the unshifted input, which lies near
    zero where the shift dominates: on a trained harnet, at epsilon 1e-6, that blew
    relevance up to 7e31 for an output of 206. As epsilon goes to 0 these rules give
    input x gradient; a larger epsilon keeps the strong, consistent contributions and
    drops the weak, noisy ones.
    """
    with torch.no_grad():
        output = network(windows)
    start = torch.zeros_like(output).scatter_(1, target[:, None], output.gather(1, target[:, None]))
    return _relevance(network, windows.detach(), start, epsilon)


# ---------------------------------------------------------------- Captum methods


def reference_windows(windows: Tensor, baseline: str) -> Tensor:
    """The reference input: each window's per-axis mean held constant, or zeros."""
    if baseline == "mean":
        return windows.mean(dim=2, keepdim=True).expand_as(windows).contiguous()
    if baseline == "zero":
        return torch.zeros_like(windows)
    raise ValueError(f"baseline must be 'mean' or 'zero', got {baseline!r}")


def _integrated_gradients(
    network: nn.Module, windows: Tensor, target: Tensor, settings: Attribution
) -> Tensor:
    return IntegratedGradients(network).attribute(
        windows,
        baselines=reference_windows(windows, settings.baseline),
        target=target,
        n_steps=settings.ig_steps,
        internal_batch_size=len(windows),
    )


def _deeplift(network: nn.Module, windows: Tensor, target: Tensor, settings: Attribution) -> Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
        return DeepLift(network).attribute(
            windows, baselines=reference_windows(windows, settings.baseline), target=target
        )


def _input_x_gradient(
    network: nn.Module, windows: Tensor, target: Tensor, settings: Attribution
) -> Tensor:
    return InputXGradient(network).attribute(windows, target=target)


def _lrp(network: nn.Module, windows: Tensor, target: Tensor, settings: Attribution) -> Tensor:
    return lrp(network, windows, target, settings.lrp_epsilon)


METHODS: dict[str, Callable[[nn.Module, Tensor, Tensor, Attribution], Tensor]] = {
    "integrated_gradients": _integrated_gradients,
    "deeplift": _deeplift,
    "input_x_gradient": _input_x_gradient,
    "lrp": _lrp,
}


def attribute(
    network: nn.Module, windows: Tensor, target: Tensor, method: str, settings: Attribution
) -> Tensor:
    """Relevance ``(N, 3, L)`` of each window's ``target`` margin by ``method``."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; known: {sorted(METHODS)}")
    windows = windows.detach().requires_grad_(True)
    return METHODS[method](network, windows, target, settings).detach()
