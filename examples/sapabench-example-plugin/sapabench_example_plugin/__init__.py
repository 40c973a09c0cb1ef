"""An example sapabench plugin: a random-noise attack and a median-filter defense."""
