"""Gradient matching's head-trajectory option matches what a linear victim trains, and only that."""

from __future__ import annotations

import pytest
import torch

from sapabench.attacks._head import parse_head_epochs
from sapabench.attacks.base import CraftContext, create_attack
from sapabench.attacks.gradient_matching import GradientMatching
from sapabench.core.datasets import load_dataset
from sapabench.core.errors import ConfigError
from sapabench.core.runtime import seeded
from sapabench.victims.protocols import head

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _members_and_snapshots(digits, epochs="0,1,3"):
    attack = create_attack(
        "gradient-matching", dataset="digits", preset="smoke", match="head-trajectory", head_epochs=epochs
    )
    ctx = CraftContext(digits, 0, torch.Generator().manual_seed(0), CPU)
    with seeded(0, CPU):
        members = attack.config.members(ctx)
        snapshots = GradientMatching._matched(attack.config, ctx, members)
    return members, snapshots


def test_head_trajectory_snapshots_train_a_fresh_head_on_the_frozen_surrogate(digits):
    members, snapshots = _members_and_snapshots(digits)
    surrogate = members[0].model.state_dict()
    assert len(snapshots) == 3
    name, _ = head(members[0].model)
    heads = []
    for snap in snapshots:
        state = snap.state_dict()
        # the extractor is the surrogate's, bit for bit (BatchNorm statistics included) ...
        assert all(torch.equal(state[k], surrogate[k]) for k in state if not k.startswith(name + "."))
        # ... and only the head's parameters are trained, so only they are matched
        trainable = [n for n, p in snap.named_parameters() if p.requires_grad]
        assert trainable and all(n.startswith(name + ".") for n in trainable)
        heads.append(state[name + ".weight"])
    assert not torch.equal(heads[0], surrogate[name + ".weight"])  # a fresh head, not the surrogate's
    assert not torch.equal(heads[0], heads[1]) and not torch.equal(heads[1], heads[2])  # it trains


def test_head_trajectory_is_deterministic_per_seed(digits):
    _, first = _members_and_snapshots(digits, "2")
    _, again = _members_and_snapshots(digits, "2")
    a, b = first[0].state_dict(), again[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"match": "head"}, "invalid match='head': one of full, head-trajectory"),
        ({"head_epochs": "1,x"}, "invalid head_epochs"),
    ],
)
def test_bad_match_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        create_attack("gradient-matching", dataset="digits", **options)


def test_parse_head_epochs():
    assert parse_head_epochs("6, 0,2,2") == (0, 2, 6)
    assert parse_head_epochs("") is None and parse_head_epochs("-1") is None and parse_head_epochs(3) is None
