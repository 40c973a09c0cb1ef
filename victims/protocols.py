"""Victim protocols: what a victim starts from and which of its weights it trains.

Targeted poisoning barely works against a victim trained from scratch on small data; it works
where the victim re-uses a clean model (transfer learning, fine-tuning) and in a re-run from the
attacker's own initialisation. The protocol is an axis of every suite grid
(``sapabench list protocols``):

- ``scratch``: fresh initialisation, every weight trained (the paper's main protocol).
- ``finetune``: start from a clean pretrained model of the victim architecture and train every
  layer at a tenth of the recipe's learning rate.
- ``linear``: freeze a clean pretrained feature extractor (weights and BatchNorm statistics),
  re-initialise the classification head and train only the head.
- ``known-init``: from scratch, starting from the attacker's surrogate's initial weights: a
  white-box upper bound, never pooled with the other protocols.

Where the pretrained model comes from (:class:`Pretrained`) decides white-box or black-box:
``surrogate`` is the clean run the attacker crafted against (same architecture, recipe and
seed: white-box when the victim has the surrogate's architecture), ``independent`` a clean run
of the victim architecture with a seed of its own, ``file`` a checkpoint the user brings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sapabench.core.errors import ConfigError
from sapabench.core.names import SCRATCH
from sapabench.core.registry import Registry


@dataclass(frozen=True)
class Protocol:
    """How a victim is trained on the (poisoned) data.

    Attributes:
        name: registry name.
        start: ``random`` (fresh initialisation), ``pretrained`` (a clean pretrained model) or
            ``attacker-init`` (the surrogate's initial weights).
        trains: ``all`` weights or only the ``head`` (the last linear layer, re-initialised).
        lr_scale: multiplies the recipe's learning rate.
        white_box: the victim shares the attacker's randomness by construction (an upper bound).
    """

    name: str
    start: str
    trains: str = "all"
    lr_scale: float = 1.0
    white_box: bool = False

    @property
    def needs_pretrained(self) -> bool:
        return self.start == "pretrained"


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def _register(protocol: Protocol, description: str) -> None:
    PROTOCOLS.register(protocol.name, description=description)(lambda: protocol)


_register(Protocol(SCRATCH, "random"), "from-scratch retraining, every weight trained (default; the paper's protocol)")
_register(
    Protocol("finetune", "pretrained", lr_scale=0.1),
    "start from a clean pretrained model, train every layer at 0.1x the recipe's learning rate",
)
_register(
    Protocol("linear", "pretrained", trains="head"),
    "frozen clean pretrained feature extractor, re-initialised head, only the head trained",
)
_register(
    Protocol("known-init", "attacker-init", white_box=True),
    "from scratch from the surrogate's initial weights: a WHITE-BOX UPPER BOUND, never pooled",
)


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name`` (unknown names fail with a did-you-mean)."""
    return PROTOCOLS.create(name)


PRETRAINED_SOURCES = ("surrogate", "independent")
SURROGATE_SOURCE = PRETRAINED_SOURCES[0]
NO_PRETRAINED = "none"
"""The pretrained source recorded for protocols that start from no pretrained model."""
FILE_PREFIX = "file:"
"""A checkpoint source is recorded as ``file:<absolute path>@<sha256>``."""
INDEPENDENT_SEED = 10_000
"""A pretrained model of source ``independent`` is seeded ``INDEPENDENT_SEED + victim seed``:
never the seed of any attacker's surrogate (craft seeds are below it in every suite)."""


def is_white_box(protocol: str, pretrained: str, arch: str, surrogate_arch: str | None) -> bool:
    """Whether a victim is the attacker's own model: by construction (``known-init``), or because
    it starts from the surrogate the attacker crafted against (source ``surrogate`` with the
    surrogate's architecture; an unknown surrogate architecture counts as the same). Its results
    are an upper bound, never evidence for a black-box claim."""
    if get_protocol(protocol).white_box:
        return True
    return pretrained == SURROGATE_SOURCE and (surrogate_arch is None or arch == surrogate_arch)


def head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classification head: the last ``nn.Linear`` of the model, with its qualified name."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ConfigError(f"{type(model).__name__} has no linear head; the linear protocol needs one")
    return found[-1]


def freeze_extractor(model: nn.Module) -> list[nn.Parameter]:
    """Make every parameter but the head's untrainable; returns the head's parameters."""
    _, h = head(model)
    keep = {id(p) for p in h.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return list(h.parameters())


def extractor_eval(model: nn.Module) -> None:
    """Put every module but the head in eval mode (BatchNorm statistics stay the pretrained ones)."""
    _, h = head(model)
    for m in model.modules():
        if m is not h and m is not model:
            m.eval()
    model.training = True


def load_start(model: nn.Module, weights: dict[str, torch.Tensor], protocol: Protocol) -> None:
    """Load the starting ``weights`` into ``model``; a ``head``-training protocol keeps the
    model's own freshly initialised head (the pretrained head is not the victim's)."""
    state = dict(weights)
    if protocol.trains == "head":
        name, _ = head(model)
        state = {k: v for k, v in state.items() if not k.startswith(name + ".")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed = set(model.state_dict()) - set(state)
    if unexpected or set(missing) - allowed:
        raise ConfigError(f"starting weights do not fit the model (missing {missing[:1]}, unexpected {unexpected[:1]})")
