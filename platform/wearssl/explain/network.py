"""The network a head is explained through: residual blocks laid out, ReLUs as
modules, the head's last layer giving class margins.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import Tensor, nn

from wearssl.models.harnet import (
    TASK_HEADS,
    HarNet,
    ResBlock,
)

CLASSIFIER_HEAD = "classifier"
PAPER_PRETEXT_HEADS = ("aot", "permute", "time_warp")


class Residual(nn.Module):
    """``x + branch(x)``: a residual block with its branch as a plain module sequence."""

    def __init__(self, branch: nn.Sequential) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def _residual(block: ResBlock) -> Residual:
    """The block's own layers (shared, not copied), its two functional ReLUs as modules."""
    return Residual(
        nn.Sequential(block.bn1, nn.ReLU(), block.conv1, block.bn2, nn.ReLU(), block.conv2)
    )


def _laid_out(module: nn.Module) -> nn.Module:
    if isinstance(module, ResBlock):
        return _residual(module)
    if isinstance(module, nn.Sequential):
        return nn.Sequential(
            OrderedDict((name, _laid_out(child)) for name, child in module.named_children())
        )
    return module


def _margin_linear(linear: nn.Linear) -> nn.Linear:
    """``linear`` followed by ``z_j - mean_{i != j} z_i``, folded into one linear layer.

    With k classes the margins are ``k / (k - 1) * (z - mean(z))``, a linear map of the
    logits, so weights and bias transform alike.
    """
    k = linear.out_features
    if k < 2:
        raise ValueError(f"a head with {k} output cannot be explained as a class decision")
    margin = nn.Linear(linear.in_features, k)
    with torch.no_grad():
        margin.weight.copy_(k / (k - 1) * (linear.weight - linear.weight.mean(0, keepdim=True)))
        margin.bias.copy_(k / (k - 1) * (linear.bias - linear.bias.mean()))
    return margin


def model_heads(model: HarNet) -> tuple[str, ...]:
    """The heads ``model`` has: ``classifier``, or the pretext tasks of :data:`TASK_HEADS`."""
    return (CLASSIFIER_HEAD,) if model.n_classes is not None else tuple(TASK_HEADS)


def default_heads(model: HarNet) -> list[str]:
    return [CLASSIFIER_HEAD] if model.n_classes is not None else list(PAPER_PRETEXT_HEADS)


def _head_layers(model: HarNet, head: str) -> list[nn.Module]:
    if head == CLASSIFIER_HEAD:
        classifier = model.classifier
        return [classifier.linear1, classifier.relu, _margin_linear(classifier.linear2)]
    return [_margin_linear(getattr(model, TASK_HEADS[head]).linear1)]


def explained_network(model: HarNet, head: str) -> nn.Sequential:
    """A copy of ``model`` (eval mode, no parameter gradients) mapping windows to the
    ``(N, k)`` class margins of ``head``; ``model`` itself is left as it is."""
    if head not in model_heads(model):
        raise ValueError(f"head {head!r}: this model has the heads {list(model_heads(model))}")
    model = copy.deepcopy(model).eval()
    network = nn.Sequential(
        OrderedDict(
            features=_laid_out(model.feature_extractor),
            flatten=nn.Flatten(),
            head=nn.Sequential(*_head_layers(model, head)),
        )
    )
    return network.eval().requires_grad_(False)


def prediction_confidence(margins: Tensor) -> Tensor:
    """Softmax probabilities ``(N, k)`` of the head from its margins (exact: the logits
    are ``margins * (k - 1) / k`` plus a per-window constant that softmax ignores)."""
    k = margins.shape[1]
    return torch.softmax(margins * (k - 1) / k, dim=1)


def confidence_in(network: nn.Module, windows: Tensor, predicted: Tensor) -> Tensor:
    with torch.no_grad():
        return prediction_confidence(network(windows)).gather(1, predicted[:, None])[:, 0]
