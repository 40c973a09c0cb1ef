"""``python -m sapabench``: the command line (:mod:`sapabench.benchmark.cli`)."""

from sapabench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
