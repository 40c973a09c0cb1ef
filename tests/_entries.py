"""A valid leaderboard entry to tamper with in tests."""

from sapabench.core.stats import mean_se
from sapabench.leaderboard.schema import PER_DEVICE, SCHEMA_VERSION, measure_summary, seal


def _timings(craft_s, surrogates_s, devices):
    per_device = {
        name: {
            "trials": n,
            "hosts": [],
            "train_steps": {"eager": n},
            "train_s_mean": 2.0 * (i + 1),
            "eval_s_mean": 0.1,
            "images_per_s": 5000.0 / (i + 1),
            "peak_memory_mb": 900.0,
        }
        for i, (name, n) in enumerate(sorted(devices.items()))
    }
    one = next(iter(per_device.values())) if len(per_device) == 1 else None
    averages = {k: None if one is None else one[k] for k in PER_DEVICE}
    return {
        "craft_s": craft_s,
        "surrogates_s": surrogates_s,
        **averages,
        "total_s": 12.3,
        "devices": per_device,
        "craft_devices": [],
    }


def make_entry(
    attack="sapa-error-min",
    values=(0.5, 0.6, 0.7),
    recipe="sgd",
    arch="convnet",
    threat="untargeted",
    metric="clean_accuracy",
    higher=False,
    isa="AVX2",
    cells=None,
    protocol="scratch",
    pretrained="none",
    margin=None,
    options=None,
    preset="embedded",
    dataset="digits",
    attack_config=None,
    craft_s=6.0,
    surrogates_s=0.0,
    devices=None,
    craft_numerics=("fp32", "contiguous"),
):
    """An entry whose trial ``values`` came from ``cells`` ((craft seed, victim seed) pairs;
    default: craft seed 0 with victims 100, 101, ...); ``margin`` = (values, clean values);
    ``devices``: {device: trials} when the trials ran on several devices (default: all on one)."""
    cells = [[0, 100 + i] for i in range(len(values))] if cells is None else [list(c) for c in cells]
    mean, se = mean_se(list(values))
    measures = {} if margin is None else {"adversarial_margin": measure_summary(list(margin[0]), list(margin[1]))}
    return seal(
        {
            "schema_version": SCHEMA_VERSION,
            "entry_id": f"{attack}-{recipe}-{arch}" + "".join(f"-{k}{v}" for k, v in sorted((options or {}).items())),
            "attack": attack,
            "base_attack": attack.removeprefix("sapa-"),
            "sapa": attack.startswith("sapa-"),
            "defense": "none",
            "setting": {
                "suite": "t",
                "dataset": dataset,
                "arch": arch,
                "recipe": recipe,
                "surrogate": "preset",
                "threat": threat,
                "eps": 32 / 255,
                "budget": 1.0,
                "victim": {"epochs": 8},
                "preset": preset,
                "options": dict(options or {}),
                "precision": "fp32",
                "memory_format": "contiguous",
                "protocol": protocol,
                "pretrained": pretrained,
                "craft_precision": craft_numerics[0],
                "craft_memory_format": craft_numerics[1],
                "attack_config": dict(attack_config or {}),
            },
            "metric": {
                "name": metric,
                "higher_is_stronger": higher,
                "mean": mean,
                "se": se,
                "trials": len(values),
                "values": list(values),
            },
            "measures": measures,
            "clean_accuracy": {"mean": mean, "se": se},
            "defense_stats": {},
            "timings": _timings(craft_s, surrogates_s, devices or {"cpu": len(values)}),
            "provenance": {
                "sapabench_version": "0.1.0",
                "git_commit": "abc",
                "torch": "2.15.0",
                "timm": "1.0.31",
                "device": "cpu",
                "isa": isa,
                "deterministic": False,
                "craft_seeds": sorted({c[0] for c in cells}),
                "trial_seeds": sorted({c[1] for c in cells}),
                "poison_sha256": ["0" * 64] * len({c[0] for c in cells}),
                "cell_seeds": cells,
            },
        }
    )


def make_clean_entry(values=(0.98, 0.99), recipe="sgd", suite="t"):
    """The clean victims' entry of a setting (no poison: no craft seed, victim seeds 100, ...)."""
    e = make_entry("error-min", values, recipe=recipe)
    e.update(attack="clean", base_attack="clean", entry_id=f"clean-{recipe}-convnet", sapa=False)
    cells = [[None, 100 + i] for i in range(len(values))]
    e["provenance"].update(craft_seeds=[], poison_sha256=[], cell_seeds=cells)
    e["setting"].update(preset="-", surrogate="-", threat="none", suite=suite)
    return seal({k: v for k, v in e.items() if k != "content_sha256"})
