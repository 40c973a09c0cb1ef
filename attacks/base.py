"""The attack interface: one class per attack, one method (:meth:`Attack.craft`) to implement.

:meth:`Attack.run` does everything around it the same way for every attack (seeding, timing,
surrogate acquisition, bounds checks, building the :class:`PoisonSet`), so crafted artifacts are
comparable and a new attack cannot forget a check.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from attacks.artifact import PoisonSet, ThreatModel
from attacks.surrogate import SurrogateSpec, get_surrogate
from benchmark.datasets import ImageDataset
from benchmark.errors import ConfigError
from benchmark.registry import Registry
from victims.archs import Victim
from victims.train import check_seed, resolve_device, seeded


@dataclass(frozen=True)
class AttackConfig:
    """Settings every attack has.

    Attributes:
        eps: L_inf bound of each perturbation in [0, 1] pixel units (16/255 targeted/backdoor,
            8/255 untargeted in the paper).
        budget: fraction of the training set the attacker may perturb (0.01 targeted/backdoor,
            1.0 untargeted in the paper).
        rho: SAPA's radius (0.05 in the paper); used only by the SAPA variants.
        surrogate: the clean model crafted against.
    """

    eps: float
    budget: float
    rho: float = 0.05
    surrogate: SurrogateSpec = field(default_factory=SurrogateSpec)

    def __post_init__(self) -> None:
        if not isinstance(self.eps, (int, float)) or not 0 < self.eps <= 1:
            raise ConfigError(f"invalid eps={self.eps!r}: must be in (0, 1] pixel units, e.g. 16/255 (set --eps)")
        if not isinstance(self.budget, (int, float)) or not 0 < self.budget <= 1:
            raise ConfigError(f"invalid budget={self.budget!r}: must be a fraction in (0, 1], e.g. 0.01 (set --budget)")
        if not isinstance(self.rho, (int, float)) or not self.rho > 0:
            raise ConfigError(f"invalid rho={self.rho!r}: SAPA's radius must be > 0 (paper: 0.05)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"invalid {name}={value!r}: must be a positive integer")


@dataclass
class CraftContext:
    """What :meth:`Attack.craft` gets: the data, the seed's generator and the surrogate."""

    dataset: ImageDataset
    seed: int
    generator: torch.Generator
    device: torch.device
    use_cache: bool = True
    surrogate_info: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = lambda message: None

    def surrogate(self, spec: SurrogateSpec) -> Victim:
        model, info = get_surrogate(spec, self.dataset, self.seed, self.device, self.use_cache)
        self.surrogate_info.update(info)
        return model

    def randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))


@dataclass
class Crafted:
    """What :meth:`Attack.craft` returns."""

    indices: Tensor
    delta: Tensor
    threat: ThreatModel
    trigger: Tensor | None = None
    labels: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Attack(ABC):
    """Base class of every attack.

    Subclasses set ``threat`` (targeted, backdoor or untargeted), ``Config`` (a frozen
    :class:`AttackConfig` subclass) and ``presets`` (``paper``, ``embedded``, ``smoke``), and
    implement :meth:`craft`. ``self.rho`` is the SAPA radius for a SAPA variant and None for the
    base attack; pass it to :func:`attacks.sapa.worst_case_weights` where the attack takes the
    gradient SAPA replaces, and nowhere else.
    """

    threat: ClassVar[str]
    Config: ClassVar[type[AttackConfig]]
    presets: ClassVar[dict[str, dict[str, Any]]]

    def __init__(self, name: str, config: AttackConfig, sapa: bool) -> None:
        self.name, self.config, self.sapa = name, config, sapa

    @property
    def rho(self) -> float | None:
        return self.config.rho if self.sapa else None

    @abstractmethod
    def craft(self, ctx: CraftContext) -> Crafted:
        """Craft the poison set for ``ctx.dataset`` (all randomness from ``ctx.generator`` / torch's seeded RNG)."""

    def run(
        self,
        dataset: ImageDataset,
        seed: int = 0,
        device: torch.device | str = "cpu",
        *,
        use_cache: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> PoisonSet:
        """Craft, time and validate a poison set; the caller's RNG state is left untouched."""
        from benchmark import __version__

        check_seed(seed)
        dev = resolve_device(device)
        ds = dataset.to(dev)
        ctx = CraftContext(ds, seed, torch.Generator().manual_seed(seed), dev, use_cache, log=log or (lambda m: None))
        with seeded(seed, dev):
            t0 = time.perf_counter()
            out = self.craft(ctx)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds = time.perf_counter() - t0
        surrogate_train_s = 0.0 if ctx.surrogate_info.get("cached", True) else ctx.surrogate_info.get("train_seconds", 0.0)
        # Crafting time excludes training the clean surrogate (shared by a baseline and its SAPA
        # variant, and cached); surrogate retraining *inside* an attack (Sleeper Agent) counts.
        extra = {**out.extra, "surrogate_train_seconds_excluded": surrogate_train_s}
        return PoisonSet(
            attack=self.name,
            dataset=ds.name,
            dataset_fingerprint=ds.fingerprint,
            num_train=ds.num_train,
            image_shape=tuple(ds.train_x.shape[1:]),  # type: ignore[arg-type]
            indices=out.indices.detach().cpu().to(torch.int64),
            delta=out.delta.detach().cpu().to(torch.float32).contiguous(),
            labels=None if out.labels is None else out.labels.detach().cpu().to(torch.int64),
            eps=float(self.config.eps),
            budget=float(self.config.budget),
            threat=out.threat,
            trigger=None if out.trigger is None else out.trigger.detach().cpu().float().contiguous(),
            config={**self.config.to_json(), "sapa": self.sapa},
            seed=seed,
            surrogate={k: v for k, v in ctx.surrogate_info.items() if k != "cached"},
            craft_seconds=max(0.0, seconds - surrogate_train_s),
            sapabench_version=__version__,
            extra=extra,
        )


# ------------------------------------------------------------------------------------ registry

ATTACKS: Registry[Attack] = Registry("attack", plugin_group="sapabench.attacks")


def preset_for(dataset: str) -> str:
    """``embedded`` for the built-in digits, ``paper`` (the paper's CIFAR defaults) otherwise."""
    return "embedded" if dataset == "digits" else "paper"


def build_config(cls: type[Attack], preset: str, overrides: dict[str, Any]) -> AttackConfig:
    if preset not in cls.presets:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(cls.presets))}")
    values = dict(cls.presets[preset])
    known = {f.name for f in fields(cls.Config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown attack option {', '.join(map(repr, unknown))}; options are: {', '.join(sorted(known))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    surrogate = values.get("surrogate", SurrogateSpec())
    if isinstance(surrogate, dict):
        surrogate = SurrogateSpec(**surrogate)
    values["surrogate"] = surrogate
    try:
        return cls.Config(**values)
    except TypeError as err:
        raise ConfigError(f"bad attack options: {err}") from None


def register_pair(base_name: str, cls: type[Attack], description: str) -> None:
    """Register ``base_name`` and ``sapa-<base_name>``: the same class, with and without SAPA."""
    for sapa in (False, True):
        name = f"sapa-{base_name}" if sapa else base_name

        def factory(dataset: str = "digits", preset: str | None = None, _name: str = name, _sapa: bool = sapa, **overrides: Any) -> Attack:
            return cls(_name, build_config(cls, preset or preset_for(dataset), overrides), _sapa)

        factory.__doc__ = cls.__doc__
        ATTACKS.register(name, description=("SAPA + " if sapa else "") + description + f" [{cls.threat}]")(factory)


def create_attack(name: str, dataset: str = "digits", preset: str | None = None, **overrides: Any) -> Attack:
    """Build the registered attack ``name`` with the preset for ``dataset`` and ``overrides``."""
    return ATTACKS.create(name, dataset=dataset, preset=preset, **overrides)


def with_options(attack: Attack, **overrides: Any) -> Attack:
    """A copy of ``attack`` with some config fields replaced."""
    return type(attack)(attack.name, replace(attack.config, **overrides), attack.sapa)


# ----------------------------------------------------------------------------------- helpers


def project(delta: Tensor, x: Tensor, eps: float) -> Tensor:
    """Clip ``delta`` into the L_inf ball of radius eps and so that ``x + delta`` stays in [0, 1]."""
    return torch.maximum(torch.minimum(delta.clamp(-eps, eps), 1 - x), -x)


def random_delta(x: Tensor, eps: float, generator: torch.Generator) -> Tensor:
    """A uniform random start in the eps ball around ``x``, inside the pixel range."""
    return project((torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1) * eps, x, eps)


def pick_indices(labels: Tensor, cls: int | None, count: int, generator: torch.Generator) -> Tensor:
    """``count`` distinct random training indices, drawn from class ``cls`` (all classes if None)."""
    pool = torch.arange(len(labels)) if cls is None else torch.nonzero(labels.cpu() == cls).flatten()
    if count > len(pool):
        count = len(pool)
    if count < 1:
        raise ConfigError("the budget allows no poison at all; raise --budget")
    return pool[torch.randperm(len(pool), generator=generator)[:count]].sort().values


def budget_count(config: AttackConfig, num_train: int) -> int:
    """How many training images the budget allows (refuses a budget that allows none)."""
    count = math.floor(config.budget * num_train + 1e-9)
    if count < 1:
        raise ConfigError(
            f"budget {config.budget:g} x {num_train} training images allows no poison; raise --budget to at least {1 / num_train:.4f}"
        )
    return count
