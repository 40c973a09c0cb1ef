"""Poisoning attacks (baselines and their SAPA-augmented versions).

The attack registry, poison artifacts and the SAPA step arrive with the attacks issue; victims
already accept any poison set that provides ``indices``, ``delta`` and ``labels``
(:class:`benchmark.datasets.PoisonLike`).
"""
