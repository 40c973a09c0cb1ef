"""A training step captured once as a CUDA graph and replayed (the fast path on a GPU).

The step is a function of input tensors of fixed shape (one batch's integer draws, its MixUp
weights and its PGD starts, :mod:`sapabench.victims.augment`) that reads and updates only tensors
allocated before capture (the weights, BatchNorm statistics, the optimiser state, the
learning-rate tensor, the summed loss). :class:`CapturedStep` runs it eagerly for its first
``warmup`` calls on the trainer's own (non-default) stream, as CUDA requires before capture (lazy
initialisation of cuBLAS/cuDNN handles and autograd's stream bookkeeping stay out of the
graph), then captures it into static input buffers and from then on copies each batch's inputs
in and replays. The eager calls are real
training steps, so nothing is run twice and nothing is rolled back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

StepFn = Callable[..., None]


class CapturedStep:
    """``step(*inputs)`` for batches of one size: eager for ``warmup`` calls, then replayed.

    Runs on ``stream`` (the trainer's own, never the default stream), which is also the stream
    the graph is captured on: libraries keep per-stream scratch space (cuBLAS's workspace), so
    graphs of victims that replay side by side on their own streams must not share a capture
    stream. The step draws no random numbers from generators of its own (its random inputs come
    in with the batch); torch's default generator, which a gradient transform may use, is
    graph-safe by default.
    """

    def __init__(self, step: StepFn, stream: torch.cuda.Stream, warmup: int = 3) -> None:
        self._step, self._stream, self._warmup = step, stream, warmup
        self._calls = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs: tuple[Tensor, ...] = ()

    @property
    def captured(self) -> bool:
        return self._graph is not None

    def __call__(self, *inputs: Tensor) -> None:
        if self._graph is not None:
            for static, value in zip(self._inputs, inputs, strict=True):
                static.copy_(value)
            self._graph.replay()
            return
        self._calls += 1
        with torch.cuda.stream(self._stream):
            if self._calls <= self._warmup:
                self._step(*inputs)
                return
            self._inputs = tuple(t.clone() for t in inputs)
            self._stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._stream):
                self._step(*self._inputs)
            self._graph = graph
            graph.replay()
