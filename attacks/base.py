"""The attack interface: one class per attack, one method (:meth:`Attack.craft`) to implement.

:meth:`Attack.run` does everything around it the same way for every attack (seeding, timing,
surrogate acquisition, bounds checks, building the :class:`PoisonSet`), so crafted artifacts are
comparable and a new attack cannot forget a check.
"""

from __future__ import annotations

import inspect
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from sapabench.attacks.surrogate import SurrogateSpec, get_surrogate
from sapabench.core.checks import positive
from sapabench.core.datasets import ImageDataset
from sapabench.core.errors import ConfigError
from sapabench.core.names import EMBEDDED_DATASET, default_preset, sapa_name
from sapabench.core.numerics import FP32, Numerics
from sapabench.core.poison import PoisonSet
from sapabench.core.provenance import VERSION
from sapabench.core.registry import Registry
from sapabench.core.runtime import check_seed, resolve_device, seeded
from sapabench.core.sharpness import RHO_SCALES, Radius
from sapabench.core.threats import ThreatModel
from sapabench.victims.archs import Victim

ENSEMBLE_SEED_STRIDE = 100_003
"""Seeds of an attacker's extra ensemble members: apart from every craft seed's own surrogate
and from independent pretrained victims (``INDEPENDENT_SEED`` + victim seed)."""
SURROGATES_S = "surrogates_train_s"
"""Key of a poison's ``extra``: seconds its clean surrogates took to train (all of them)."""
MAX_MEMBERS = 16
"""Most architectures (K) and most initialisations per architecture (R) of an ensemble."""


def member_seed(seed: int, k: int, r: int) -> int:
    """The clean-run seed of ensemble member (architecture ``k``, initialisation ``r``) of craft
    seed ``seed``: ``seed`` itself for (0, 0), distinct for every other (k, r)."""
    return seed + ENSEMBLE_SEED_STRIDE * (r + MAX_MEMBERS * k)


@dataclass(frozen=True)
class Member:
    """One clean surrogate of an ensemble: the model, its architecture and its seed."""

    model: Victim
    arch: str
    seed: int


@dataclass(frozen=True)
class AttackConfig:
    """Settings every attack has.

    Attributes:
        eps: L_inf bound of each perturbation in [0, 1] pixel units (16/255 targeted/backdoor,
            8/255 untargeted in the paper).
        budget: fraction of the training set the attacker may perturb (0.01 targeted/backdoor,
            1.0 untargeted in the paper).
    """

    eps: float
    budget: float

    def __post_init__(self) -> None:
        if not isinstance(self.eps, (int, float)) or not 0 < self.eps <= 1:
            raise ConfigError(f"invalid eps={self.eps!r}: must be in (0, 1] pixel units, e.g. 16/255 (set --eps)")
        if not isinstance(self.budget, (int, float)) or not 0 < self.budget <= 1:
            raise ConfigError(f"invalid budget={self.budget!r}: must be a fraction in (0, 1], e.g. 0.01 (set --budget)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelConfig(AttackConfig):
    """Settings of an attack crafted against a clean-trained model (feature collision, MetaPoison,
    hidden-trigger and clean-label backdoors: baselines with no SAPA twin).

    Attributes:
        surrogate: the model crafted against (:class:`SurrogateSpec`; a suite's or the
            command line's ``surrogate`` option replaces the preset's).
    """

    surrogate: SurrogateSpec = field(default_factory=SurrogateSpec)


@dataclass(frozen=True)
class SurrogateConfig(ModelConfig):
    """Settings of an attack crafted against a surrogate model, the kind SAPA augments.

    Attributes:
        rho: SAPA's radius (0.05 in the paper); used only by the SAPA version.
        rho_scale: ``absolute`` (default, the paper's): ``rho`` is the radius. ``resnet18``:
            ``rho`` is read relative to a CIFAR-10 ResNet-18's weight norm at initialisation,
            radius = rho x ||theta|| / :data:`sapabench.attacks.sapa.RESNET18_INIT_NORM` with ``theta``
            the weights SAPA perturbs, so a small model gets the relative radius the paper's
            ResNet-18 had (the embedded convnet's ||theta|| is about 21: rho 0.05 absolute is
            about 4x the paper's relative radius there).
    """

    rho: float = 0.05
    rho_scale: str = "absolute"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.rho, (int, float)) or not self.rho > 0:
            raise ConfigError(f"invalid rho={self.rho!r}: SAPA's radius must be > 0 (paper: 0.05)")
        if self.rho_scale not in RHO_SCALES:
            raise ConfigError(f"invalid rho_scale={self.rho_scale!r}: {' or '.join(RHO_SCALES)}")


MAX_OPTION = {
    "restarts": 1_000,
    "ensemble": 1_000,
    "reinit": 1_000,
    "unroll": 1_000,
    "max_rounds": 10_000,
    "stagger_epochs": 10_000,
    "batch_size": 1_000_000,
}
"""The most an integer option of an attack may ask for (default :data:`MAX_STEPS`): a config
(from a suite, an entry to verify, a submission) of 10^9 steps would re-craft without bound."""
MAX_STEPS = 100_000
"""The most optimisation steps of any kind (the paper's presets use at most a few thousand)."""


def check_positive_ints(config: AttackConfig, *names: str) -> None:
    """Refuse config fields that must be positive integers (steps, restarts, batch sizes...),
    and values beyond their maximum (:data:`MAX_OPTION`, :data:`MAX_STEPS`)."""
    for name in names:
        value = getattr(config, name)
        positive(name, value, integer=True)
        most = MAX_OPTION.get(name, MAX_STEPS)
        if value > most:
            raise ConfigError(f"invalid {name}={value}: at most {most:,} (set a smaller {name})")


@dataclass
class CraftContext:
    """What :meth:`Attack.craft` gets.

    Attributes:
        dataset: the clean data, on ``device``. An attack may read ``train_x``, ``train_y``,
            ``test_x``, ``test_y`` (float32 images in [0, 1] shaped (N, C, H, W), int64
            labels), ``num_classes``, ``num_train``, ``in_chans``, ``img_size``,
            ``flip_invariant`` (whether horizontal flips preserve labels), ``mean`` / ``std``
            (the victims' normalisation, already inside every model) and ``name``. It must not
            modify them: the poison is returned as indices + perturbations.
        seed: the crafting seed. generator: a CPU ``torch.Generator`` seeded with it; draw
            targets, classes, poison indices and random starts from it. torch's global RNG is
            seeded too (for augmentation inside the loop) and restored afterwards.
        device: where to compute. log: progress messages (shown by ``sapabench attack``).
        numerics: the precision and memory format to craft in (plain fp32 unless the attack
            sets :attr:`Attack.crafts_in_numerics`): forward passes through
            ``numerics.wrapped(model)``; the perturbation stays fp32. Clean surrogates from
            :meth:`surrogate` are trained in them.
        use_cache, surrogate_info: used by :meth:`surrogate` (the trained-surrogate cache and
            its description, recorded in the poison's provenance).
    """

    dataset: ImageDataset
    seed: int
    generator: torch.Generator
    device: torch.device
    use_cache: bool = True
    numerics: Numerics = FP32
    surrogate_info: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = lambda message: None
    members_used: dict[str, dict[str, Any]] = field(default_factory=dict)  # cache key -> clean run info

    def surrogate(self, spec: SurrogateSpec) -> Victim:
        """The clean-trained surrogate ``spec`` describes, in eval mode (trained once per
        (dataset, spec, seed, numerics) and cached, so a baseline and its SAPA version share it)."""
        model, info = get_surrogate(spec, self.dataset, self.seed, self.device, self.use_cache, self.numerics)
        self.surrogate_info.update(info)
        self._used(info)
        return model

    def surrogates(self, spec: SurrogateSpec, count: int) -> list[Victim]:
        """An ensemble of ``count`` clean surrogates of ``spec``: the craft seed's own (shared with
        every other attack of this seed), then ones seeded ``seed + k * ENSEMBLE_SEED_STRIDE``
        (cached the same way; their seeds are recorded in ``surrogate_info['ensemble_seeds']``)."""
        models = [m.model for m in self.ensemble(spec, [spec.arch], count)]
        if count > 1:
            self.surrogate_info["ensemble_seeds"] = [member_seed(self.seed, 0, r) for r in range(count)]
        return models

    def ensemble(self, spec: SurrogateSpec, archs: Sequence[str], reinit: int) -> list[Member]:
        """The ensemble-and-re-initialisation surrogates: for each architecture ``archs[k]``,
        ``reinit`` clean runs of ``spec``'s recipe seeded :func:`member_seed` ``(seed, k, r)``.
        Member (0, 0) is the craft seed's own surrogate of ``archs[0]``, so one architecture and
        one initialisation is exactly the single surrogate. Each member is cached under its own
        (dataset, arch, recipe, epochs, seed) key and described in
        ``surrogate_info['members']``."""
        out = []
        for k, arch in enumerate(archs):
            for r in range(reinit):
                if k == 0 and r == 0 and arch == spec.arch:
                    model = self.surrogate(spec)
                else:
                    seed = member_seed(self.seed, k, r)
                    model, info = get_surrogate(
                        replace(spec, arch=arch), self.dataset, seed, self.device, self.use_cache, self.numerics
                    )
                    self._used(info)
                out.append(Member(model, arch, member_seed(self.seed, k, r)))
        if len(out) > 1:
            self.surrogate_info["members"] = [
                {k: v for k, v in info.items() if k != "cached"} for info in self.members_used.values()
            ]
        return out

    def _used(self, info: dict[str, Any]) -> None:
        self.members_used.setdefault(info["cache_key"], info)

    def surrogate_seconds(self) -> tuple[float, float]:
        """Training seconds of the clean surrogates this crafting used: (trained during this
        call, all of them as recorded when each was trained: the cost of the surrogates)."""
        used = self.members_used.values()
        return (
            sum(float(i.get("train_s", 0.0)) for i in used if not i.get("cached", True)),
            sum(float(i.get("train_s", 0.0)) for i in used),
        )

    def randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))


@dataclass
class Crafted:
    """What :meth:`Attack.craft` returns: the poisoned training ``indices`` (int64) and their
    ``delta`` (float32, shaped like the images), the threat model, a backdoor ``trigger``
    patch (C, h, w) if any, new ``labels`` for label-changing attacks (None: clean-label), and
    attack-specific diagnostics in ``extra`` (saved in the artifact's JSON)."""

    indices: Tensor
    delta: Tensor
    threat: ThreatModel
    trigger: Tensor | None = None
    labels: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Attack(ABC):
    """Base class of every attack.

    Subclasses set ``threat`` (targeted, backdoor or untargeted), ``Config`` (a frozen
    :class:`AttackConfig` subclass; :class:`SurrogateConfig` for attacks crafted against a
    model) and ``presets`` (one dict of config values per scale: ``paper``, ``embedded``,
    ``smoke``), implement :meth:`craft`, and register with :func:`register_attack`. An attack
    whose forward passes go through ``ctx.numerics.wrapped(model)`` sets ``crafts_in_numerics``.
    ``self.rho`` is the SAPA radius for a SAPA version (a number, or a
    :class:`sapabench.core.sharpness.Radius` read against the weights' norm with ``rho_scale``) and None
    otherwise; pass it to
    :func:`sapabench.attacks.sapa.worst_case_weights` where the attack takes the gradient SAPA replaces,
    and nowhere else.
    """

    threat: ClassVar[str]
    Config: ClassVar[type[AttackConfig]]
    presets: ClassVar[dict[str, dict[str, Any]]]
    crafts_in_numerics: ClassVar[bool] = False
    """Whether :meth:`craft` computes in ``ctx.numerics`` (bf16 autocast, channels-last). An
    attack that does not is crafted, and recorded, in plain fp32 whatever was asked."""

    def __init__(self, name: str, config: AttackConfig, sapa: bool) -> None:
        self.name, self.config, self.sapa = name, config, sapa

    def recorded_config(self) -> dict[str, Any]:
        """The resolved config (every default included) as poisons and entries record it."""
        return {**self.config.to_json(), "sapa": self.sapa}

    @property
    def rho(self) -> float | Radius | None:
        if not self.sapa:
            return None
        cfg = self.config
        scale = getattr(cfg, "rho_scale", "absolute")
        # the paper's absolute radius stays a plain number (what plugins written for it expect)
        return cfg.rho if scale == "absolute" else Radius(cfg.rho, scale)  # type: ignore[attr-defined]

    @abstractmethod
    def craft(self, ctx: CraftContext) -> Crafted:
        """Craft the poison set for ``ctx.dataset`` (all randomness from ``ctx.generator`` / torch's seeded RNG)."""

    def crafting_numerics(self, numerics: Numerics) -> Numerics:
        """The numerics this attack crafts in when asked for ``numerics``: those, or plain fp32
        for an attack that does not compute in numerics (:attr:`crafts_in_numerics`)."""
        return numerics if self.crafts_in_numerics else FP32

    def run(
        self,
        dataset: ImageDataset,
        seed: int = 0,
        device: torch.device | str = "cpu",
        *,
        use_cache: bool = True,
        log: Callable[[str], None] | None = None,
        numerics: Numerics = FP32,
    ) -> PoisonSet:
        """Craft, time and validate a poison set; the caller's RNG state is left untouched.
        ``numerics``: what to craft in (:meth:`crafting_numerics`; recorded in the poison)."""
        check_seed(seed)
        dev = resolve_device(device)
        ds = dataset.to(dev)
        used = self.crafting_numerics(numerics)
        ctx = CraftContext(
            ds, seed, torch.Generator().manual_seed(seed), dev, use_cache, used, log=log or (lambda m: None)
        )
        with seeded(seed, dev):
            t0 = time.perf_counter()
            out = self.craft(ctx)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            elapsed_s = time.perf_counter() - t0
        # Crafting time excludes training clean surrogates (shared by a baseline and its SAPA
        # variant, and cached); surrogate retraining *inside* an attack (Sleeper Agent) counts.
        # What the surrogates cost to train is recorded beside it: an ensemble pays for each.
        surrogate_train_s, surrogates_s = ctx.surrogate_seconds()
        extra = {**out.extra, "surrogate_train_s_excluded": surrogate_train_s, SURROGATES_S: surrogates_s}
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
            config=self.recorded_config(),
            seed=seed,
            surrogate={k: v for k, v in ctx.surrogate_info.items() if k != "cached"},
            craft_s=max(0.0, elapsed_s - surrogate_train_s),
            sapabench_version=VERSION,
            extra=extra,
            numerics=used,
        )


# ------------------------------------------------------------------------------------ registry

ATTACKS: Registry[Attack] = Registry("attack", plugin_group="sapabench.attacks")
A = TypeVar("A", bound=type[Attack])


def build_config(cls: type[Attack], preset: str, overrides: dict[str, Any]) -> AttackConfig:
    """``cls``'s config: its ``preset`` updated by ``overrides`` (None values are ignored)."""
    if preset not in cls.presets:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(cls.presets))}")
    values = dict(cls.presets[preset])
    known = {f.name for f in fields(cls.Config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"unknown attack option {', '.join(map(repr, unknown))}; options are: {', '.join(sorted(known))}"
        )
    values.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(values.get("surrogate"), dict):
        values["surrogate"] = SurrogateSpec(**values["surrogate"])
    try:
        return cls.Config(**values)
    except TypeError as err:
        raise ConfigError(f"bad attack options: {err}") from None


SAPA_ONLY = ("rho", "rho_scale")
"""Options that only a SAPA attack reads: refused when given to its base attack."""


def _factory(cls: type[Attack], name: str, sapa: bool) -> Callable[..., Attack]:
    def create(dataset: str = EMBEDDED_DATASET, preset: str | None = None, **overrides: Any) -> Attack:
        given = sorted(set(overrides) & set(SAPA_ONLY) & {f.name for f in fields(cls.Config)})
        if not sapa and given:
            raise ConfigError(
                f"attack {name!r}: {' and '.join(given)} is an option of SAPA attacks only; "
                f"use {sapa_name(name)!r} (or drop the option)"
            )
        return cls(name, build_config(cls, preset or default_preset(dataset), overrides), sapa)

    create.__doc__ = cls.__doc__
    return create


def register_attack(name: str, *, description: str | None = None, sapa_twin: bool = False) -> Callable[[A], A]:
    """Class decorator: register attack class ``cls`` as ``name`` and, with ``sapa_twin``, its
    SAPA version as ``sapa-<name>`` (the same class and config, differing only by the SAPA step;
    the config must then be a :class:`SurrogateConfig`).

    ``description`` (default: the class docstring's first line) is shown by ``sapabench list
    attacks``, followed by the threat model. Example::

        @register_attack("random-noise", description="sample-wise uniform noise at eps")
        class RandomNoise(Attack): ...
    """

    def decorator(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, Attack)):
            raise TypeError(f"register_attack({name!r}) decorates a subclass of attacks.Attack, not {cls!r}")
        if sapa_twin and not issubclass(cls.Config, SurrogateConfig):
            raise TypeError(f"attack {name!r}: a SAPA twin needs a config derived from SurrogateConfig (it has rho)")
        text = description if description is not None else (inspect.getdoc(cls) or name).splitlines()[0]
        for registered, sapa in [(name, False)] + ([(sapa_name(name), True)] if sapa_twin else []):
            label = ("SAPA + " if sapa else "") + text + f" [{cls.threat}]"
            factory = _factory(cls, registered, sapa)
            factory.crafts_in_numerics = cls.crafts_in_numerics  # type: ignore[attr-defined]
            ATTACKS.register(registered, description=label)(factory)
        return cls

    return decorator


def crafting_numerics(name: str, numerics: Numerics) -> Numerics:
    """The numerics registered attack ``name`` crafts in when asked for ``numerics`` (plain
    fp32 for an attack that does not compute in numerics)."""
    return numerics if getattr(ATTACKS.entry(name).factory, "crafts_in_numerics", False) else FP32


def create_attack(name: str, dataset: str = EMBEDDED_DATASET, preset: str | None = None, **overrides: Any) -> Attack:
    """Build the registered attack ``name`` with the preset for ``dataset`` and ``overrides``."""
    return ATTACKS.create(name, dataset=dataset, preset=preset, **overrides)


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


def budget_indices(ctx: CraftContext, config: AttackConfig, cls: int | None) -> Tensor:
    """The training images an attack perturbs: as many as ``config.budget`` allows, of class
    ``cls`` (every class: None), drawn from the craft seed (:func:`pick_indices`)."""
    ds = ctx.dataset
    return pick_indices(ds.train_y, cls, budget_count(config, ds.num_train), ctx.generator)


def budget_count(config: AttackConfig, num_train: int) -> int:
    """How many training images the budget allows (refuses a budget that allows none)."""
    count = math.floor(config.budget * num_train + 1e-9)
    if count < 1:
        raise ConfigError(
            f"budget {config.budget:g} x {num_train} training images allows no poison; raise --budget to at least {1 / num_train:.4f}"
        )
    return count
