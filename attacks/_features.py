"""Feature-space views of a model, for the feature-collision family (Poison Frogs, Bullseye
Polytope, Hidden-Trigger Backdoor).

``penultimate(model, x)`` is the input of the classification head (the last ``nn.Linear``): the
representation a transfer-learning victim trains its new head on. ``block_features(model, x)``
adds the output of every block, for Bullseye Polytope's end-to-end variant: the top-level
stages of the network (timm ResNet ``layer1``..``layer4``, MobileNetV2's blocks ...) where the
network has two or more, else its top-level activations (the convnet's five ReLUs).
"""

from __future__ import annotations

from torch import Tensor, nn

from sapabench.victims.protocols import head


def penultimate(model: nn.Module, x: Tensor) -> Tensor:
    """The features the head of ``model`` sees for ``x``, flattened to (N, D) (differentiable)."""
    return block_features(model, x, blocks=())[-1]


def feature_blocks(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs the end-to-end variant matches (see the module docstring)."""
    net = getattr(model, "net", model)
    stages = [m for m in net.children() if any(True for _ in m.children()) and any(True for _ in m.parameters())]
    if len(stages) >= 2:
        return stages
    return [m for m in net.children() if isinstance(m, (nn.ReLU, nn.GELU, nn.ReLU6))]


def block_features(model: nn.Module, x: Tensor, blocks: tuple[nn.Module, ...] | None = None) -> list[Tensor]:
    """The outputs of ``blocks`` (default :func:`feature_blocks`) for ``x``, each flattened to
    (N, D), followed by the penultimate features; in the order the forward pass produces them."""
    chosen = tuple(feature_blocks(model)) if blocks is None else blocks
    captured: list[Tensor] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: captured.append(out.flatten(1))) for b in chosen]
    _, linear = head(model)
    hooks.append(linear.register_forward_pre_hook(lambda _m, args: captured.append(args[0].flatten(1))))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return captured
