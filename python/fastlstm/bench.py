"""Side-by-side benchmark: fastlstm vs the NumPy reference, torch.nn.LSTM and ONNX Runtime.

Run ``python -m fastlstm bench --help``. Every implementation gets the same
weights, inputs, thread count and dtype (float32); peers are timed the way their
users call them (the module holds its weights, the timed call is the forward, or
the forward plus backward). Missing peers are reported, never fatal.

``--cell gru`` times fastlstm.GRU the same way against torch.nn.GRU, an ONNX
Runtime session of standard ``GRU`` nodes (linear_before_reset=1) and
``fastlstm.reference_gru``; ``--cell lstm`` (the default) the LSTM.

The table also gives the machine's measured fp32 GEMM rate per thread count
("peak": the best of torch.mm and numpy matmul on 2048^3), fastlstm's GFLOP/s as a
share of it (%pk), and fastlstm's "cold" time: a call right after a weight update,
which repacks the weights (the warm columns reuse the packed weights).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

import fastlstm
from fastlstm import _spec

MODES = ("forward", "train")
IMPLS = ("fastlstm", "torch", "onnxruntime", "numpy-ref")
PEERS = IMPLS[1:]
SLOW_S = 3.0  # skip the NumPy reference when one call is estimated slower than this
TRAIN_FLOPS_FACTOR = 3  # a training step counts 3x the forward FLOPs


@dataclass(frozen=True)
class Cell:
    """A cell the bench times: its fastlstm layer (``layer``, and torch.nn's of
    the same name where torch has one: otherwise the torch peer is
    `TorchLayerNormLSTM`, the equations in plain torch ops), its NumPy
    reference (module, forward, backward: the forward returns y first and the
    cache last) and its gate count."""

    name: str
    layer: str
    step_cell: str  # fastlstm's (and torch.nn's) one-step class: LSTMCell, GRUCell
    reference: str
    ref_forward: str
    ref_backward: str
    gates: int
    proj: bool  # the layer takes proj_size


CELLS = {c.name: c for c in (
    Cell("lstm", "LSTM", "LSTMCell", "fastlstm.reference", "lstm_forward", "lstm_backward",
         4, True),
    Cell("gru", "GRU", "GRUCell", "fastlstm.reference_gru", "gru_forward", "gru_backward",
         3, False),
    Cell("lnlstm", "LayerNormLSTM", "LayerNormLSTMCell", "fastlstm.reference_lnlstm",
         "lnlstm_forward", "lnlstm_backward", 4, False),
)}


def optional(module: str):
    """The module if it is installed, else None."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Shape:
    """One benchmark problem, in torch.nn.LSTM's terms (sequence-first)."""

    name: str
    T: int
    B: int
    I: int  # noqa: E741
    H: int
    layers: int = 1
    bidirectional: bool = False
    proj: int = 0
    varlen: bool = False
    step: bool = False  # T calls of the one-step cell (LSTMCell), state carried: streaming

    @property
    def D(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def H_out(self) -> int:
        return self.proj or self.H

    def describe(self) -> str:
        extra = [f"L={self.layers}"] if self.layers > 1 else []
        extra += ["bidir"] if self.bidirectional else []
        extra += [f"P={self.proj}"] if self.proj else []
        extra += [f"lengths~U[{self.T // 4},{self.T}]"] if self.varlen else []
        extra += [f"{self.T} calls of the one-step cell"] if self.step else []
        return " ".join([f"T={self.T} B={self.B} I={self.I} H={self.H}"] + extra)

    def supports(self, cell: str) -> bool:
        """Whether the cell has this shape (see why_not)."""
        return not self.why_not(cell)

    def why_not(self, cell: str) -> str:
        """Why the cell has no such shape, or "" where it has."""
        if self.proj and not CELLS[cell].proj:
            return f"the {cell} has no projection"
        if self.step and cell == "lnlstm":
            return "torch has no layer-norm LSTM cell to time a step against"
        return ""

    @property
    def modes(self) -> tuple:
        """The modes timed: a step shape is forward only (a streaming model's
        inference; training runs whole sequences)."""
        return ("forward",) if self.step else MODES


SHAPES = {
    s.name: s
    for s in (
        Shape("stream", 100, 1, 256, 256),
        Shape("small", 200, 32, 128, 128),
        Shape("mid", 100, 16, 512, 512),
        Shape("deepbench", 50, 64, 1024, 1024),
        Shape("wide", 25, 32, 2048, 2048),
        Shape("bi2", 100, 16, 512, 512, layers=2, bidirectional=True),
        Shape("varlen", 200, 32, 256, 256, varlen=True),
        Shape("proj", 100, 16, 512, 1024, proj=256),
        Shape("cell", 100, 1, 256, 256, step=True),
    )
}
QUICK_SHAPES = ("stream", "small")


def make_lengths(shape: Shape) -> np.ndarray | None:
    """Per-row lengths, uniform in [T//4, T] (seeded), or None for a full batch."""
    if not shape.varlen:
        return None
    return np.random.default_rng(0).integers(shape.T // 4, shape.T + 1, size=shape.B)


def forward_flops(shape: Shape, lengths: np.ndarray | None = None, T: int | None = None,
                  cell: str = "lstm") -> float:
    """FLOPs of one forward: 2*steps*GH*(I+H_out) (+2*steps*H*P) per layer and direction,
    with G gates (LSTM 4, GRU 3)."""
    T = shape.T if T is None else T
    G = CELLS[cell].gates
    steps = float(np.sum(lengths)) if lengths is not None else float(T * shape.B)
    total = 0.0
    for k in range(shape.layers):
        in_size = shape.I if k == 0 else shape.D * shape.H_out
        per_step = 2 * G * shape.H * (in_size + shape.H_out) + 2 * shape.H * shape.proj
        total += shape.D * steps * per_step
    return total


def mode_flops(shape: Shape, mode: str, lengths: np.ndarray | None = None,
               cell: str = "lstm") -> float:
    factor = TRAIN_FLOPS_FACTOR if mode == "train" else 1
    return factor * forward_flops(shape, lengths, cell=cell)


# --------------------------------------------------------------------------- the case


@dataclass
class Case:
    """What every implementation shares for one shape: weights and data."""

    shape: Shape
    model: fastlstm.LSTM | fastlstm.GRU
    state: dict
    x: np.ndarray  # [T,B,I]
    dy: np.ndarray  # [T,B,D*H_out], zero past each row's length
    lengths: np.ndarray | None
    cell: str = "lstm"


def make_case(shape: Shape, cell: str = "lstm") -> Case:
    if not shape.supports(cell):
        raise ValueError(f"{shape.name}: {shape.why_not(cell)}")
    proj = {"proj_size": shape.proj} if CELLS[cell].proj else {}
    model = getattr(fastlstm, CELLS[cell].layer)(
        shape.I, shape.H, num_layers=shape.layers, bidirectional=shape.bidirectional,
        dtype=np.float32, seed=0, **proj,
    )
    state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in model.state_dict().items()}
    rng = np.random.default_rng(1)
    x = rng.standard_normal((shape.T, shape.B, shape.I), dtype=np.float32)
    dy = rng.standard_normal((shape.T, shape.B, shape.D * shape.H_out), dtype=np.float32)
    lengths = make_lengths(shape)
    if lengths is not None:
        dy[np.arange(shape.T)[:, None] >= lengths[None, :]] = 0.0
    return Case(shape, model, state, x, dy, lengths, cell)


# --------------------------------------------------------------------------- implementations


class Impl:
    """An implementation under test.

    ``prepare(mode, threads)`` returns the callable to time, or a status string
    ("-", "n/a", "skipped (slow)"); ``output()`` returns the forward's
    y [T,B,D*H_out] (for a sanity check against fastlstm).
    """

    name = ""

    @staticmethod
    def supports(case: "Case") -> bool:
        return True


class Unavailable(Impl):
    """A peer that cannot run here; every measurement reports ``status``."""

    def __init__(self, name: str, status: str):
        self.name, self.status = name, status

    def prepare(self, mode: str, threads: int) -> str:
        return self.status

    def output(self) -> None:
        return None


def step_cell_state(state: dict) -> dict:
    """A one-layer state_dict under its cell's names (weight_ih_l0 -> weight_ih)."""
    return {k[:-3]: v for k, v in state.items()}


def step_loop(cell, kind, x, zero, stack):
    """The streaming call: x [T,B,I] fed one step at a time through `cell`, a
    one-step cell of `kind` (LSTMCell's calls with states (h, c), GRUCell's
    with h), the state carried and starting from zero() each. Returns run()
    (the timed call: keeps no outputs, returns the last state) and output() (y
    [T,B,H], made by `stack`, for the output check)."""
    two = _spec.SPECS[kind]["states"] == 2

    def run(keep=None):
        state = (zero(), zero()) if two else zero()
        for xt in x:
            state = cell(xt, state)
            if keep is not None:
                keep.append(state[0] if two else state)
        return state

    def output():
        hs = []
        run(hs)
        return stack(hs)

    return run, output


class FastLSTM(Impl):
    name = "fastlstm"

    def __init__(self, case: Case):
        self.case, self.lstm = case, case.model
        if case.shape.step:  # the one-step cell, with the layer's weights
            s, spec = case.shape, CELLS[case.cell]
            self.lstm = getattr(fastlstm, spec.step_cell)(s.I, s.H, dtype=np.float32, seed=0)
            self.lstm.load_state_dict(step_cell_state(case.state))
            self.lstm.eval()
            self.run, self.step_output = step_loop(
                self.lstm, case.cell, case.x, lambda: np.zeros((s.B, s.H), np.float32),
                np.stack)

    def prepare(self, mode: str, threads: int) -> Callable:
        fastlstm.set_num_threads(threads)
        if self.case.shape.step:
            return self.run
        lstm, x, dy, lengths = self.lstm, self.case.x, self.case.dy, self.case.lengths
        if mode == "forward":
            lstm.eval()
            return lambda: lstm(x, lengths=lengths)
        lstm.train()

        def step():
            lstm.zero_grad()
            lstm(x, lengths=lengths)
            lstm.backward(dy)

        return step

    @property
    def invalidation(self) -> str:
        """How the weights are marked changed, in the user's words."""
        return f"{self.case.cell}.params_changed()"

    def invalidate(self) -> None:
        """Mark the weights changed, as a weight update does: the next call
        repacks them. Called outside the timed region before each "cold" call."""
        self.lstm.params_changed()

    def output(self) -> np.ndarray:
        if self.case.shape.step:
            return self.step_output()
        return self.prepare("forward", fastlstm.get_num_threads())()[0]


def torch_layer_norm_lstm(torch):
    """The torch peer of the layer-norm LSTM, which torch.nn lacks: the
    equations in plain torch ops, as a user would write them (each layer's
    input products and their layer norm for all steps at once, then a loop
    over the steps; lengths by masking: a row's state stops at its length and
    its y is zero past it). Parameters as fastlstm.LayerNormLSTM's."""
    ln = torch.nn.functional.layer_norm

    class TorchLayerNormLSTM(torch.nn.Module):
        def __init__(self, state: dict, layers: int, bidirectional: bool, H: int):
            super().__init__()
            self.L, self.D, self.H = layers, 2 if bidirectional else 1, H
            self.p = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.from_numpy(v.copy()))
                                             for k, v in state.items()})

        def direction(self, x, sfx, rev, mask):
            p, H = self.p, self.H
            gx = ln(x @ p["weight_ih" + sfx].T, (4 * H,)) * p["weight_ln_ih" + sfx] \
                + p["bias_ih" + sfx] + p["bias_hh" + sfx]
            h = x.new_zeros(x.shape[1], H)
            c = x.new_zeros(x.shape[1], H)
            ys = [None] * x.shape[0]
            for t in (range(x.shape[0] - 1, -1, -1) if rev else range(x.shape[0])):
                a = gx[t] + ln(h @ p["weight_hh" + sfx].T, (4 * H,)) * p["weight_ln_hh" + sfx]
                i, f, g, o = a.chunk(4, 1)
                c1 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h1 = torch.sigmoid(o) * torch.tanh(ln(c1, (H,)) * p["weight_ln_c" + sfx]
                                                   + p["bias_ln_c" + sfx])
                if mask is not None:
                    m = mask[t]
                    c1, h1 = torch.where(m, c1, c), torch.where(m, h1, h)
                    ys[t] = h1 * m
                else:
                    ys[t] = h1
                h, c = h1, c1
            return torch.stack(ys)

        def forward(self, x, lengths=None):
            mask = None
            if lengths is not None:
                mask = (torch.arange(x.shape[0])[:, None] < lengths[None, :])[..., None]
            for k in range(self.L):
                x = torch.cat([self.direction(x, f"_l{k}" + ("_reverse" if d else ""), d == 1,
                                              mask) for d in range(self.D)], dim=-1)
            return x, None

    return TorchLayerNormLSTM


class Torch(Impl):
    name = "torch"

    def __init__(self, case: Case):
        import torch

        s = case.shape
        self.torch, self.T = torch, s.T
        proj = {"proj_size": s.proj} if CELLS[case.cell].proj else {}
        self.plain = case.cell == "lnlstm"
        self.step = s.step
        if s.step:  # torch.nn.LSTMCell / GRUCell, the same weights
            self.module = getattr(torch.nn, CELLS[case.cell].step_cell)(s.I, s.H)
            self.module.load_state_dict({k: torch.from_numpy(v)
                                         for k, v in step_cell_state(case.state).items()})
            self.run, self.step_output = step_loop(
                self.module, case.cell, torch.from_numpy(case.x),
                lambda: torch.zeros(s.B, s.H), torch.stack)
        elif self.plain:
            self.module = torch_layer_norm_lstm(torch)(case.state, s.layers, s.bidirectional,
                                                       s.H)
        else:
            self.module = getattr(torch.nn, CELLS[case.cell].layer)(
                s.I, s.H, num_layers=s.layers, bidirectional=s.bidirectional, **proj)
            self.module.load_state_dict({k: torch.from_numpy(v) for k, v in case.state.items()})
        self.x, self.dy = torch.from_numpy(case.x), torch.from_numpy(case.dy)
        self.lengths = None if case.lengths is None else torch.from_numpy(case.lengths.astype(np.int64))

    def _run(self, x):
        """y [T,B,D*H_out]; a variable-length batch is packed, as users do."""
        if self.lengths is None:
            return self.module(x)[0]
        if self.plain:
            return self.module(x, self.lengths)[0]
        rnn = self.torch.nn.utils.rnn
        packed = rnn.pack_padded_sequence(x, self.lengths, enforce_sorted=False)
        return rnn.pad_packed_sequence(self.module(packed)[0], total_length=self.T)[0]

    def prepare(self, mode: str, threads: int) -> Callable:
        torch, module = self.torch, self.module
        torch.set_num_threads(threads)
        if self.step:
            module.eval()

            def steps():
                with torch.inference_mode():
                    return self.run()

            return steps
        if mode == "forward":
            module.eval()

            def forward():
                with torch.inference_mode():
                    return self._run(self.x)

            return forward
        module.train()
        x = self.x.clone().requires_grad_(True)

        def step():
            module.zero_grad(set_to_none=True)
            x.grad = None
            self._run(x).backward(self.dy)

        return step

    def output(self) -> np.ndarray:
        if self.step:
            with self.torch.inference_mode():
                return self.step_output().numpy()
        return self.prepare("forward", self.torch.get_num_threads())().numpy()


class OnnxRuntime(Impl):
    name = "onnxruntime"

    @staticmethod
    def supports(case: Case) -> bool:
        # ONNX LSTM has no projection, ONNX no layer-norm LSTM, and a session
        # no one-step cell (a step would be a whole run() call)
        return not case.shape.proj and case.cell != "lnlstm" and not case.shape.step

    def __init__(self, case: Case):
        import onnxruntime

        self.ort, self.sessions = onnxruntime, {}
        from .onnx import model_from_state_dict

        # standard ONNX LSTM / GRU (linear_before_reset=1) nodes, their W, R, B
        # from fastlstm.convert.to_onnx
        self.model = model_from_state_dict(case.state, lengths=case.lengths is not None,
                                           cell=case.cell).SerializeToString()
        self.feeds = {"X": case.x}
        if case.lengths is not None:
            self.feeds["sequence_lens"] = case.lengths.astype(np.int32)

    def session(self, threads: int):
        """One session per thread count (intra-op threads = threads, inter-op = 1)."""
        if threads not in self.sessions:
            opts = self.ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            self.sessions[threads] = self.ort.InferenceSession(
                self.model, opts, providers=["CPUExecutionProvider"])
        return self.sessions[threads]

    def prepare(self, mode: str, threads: int) -> Callable | str:
        if mode != "forward":
            return "-"
        sess, feeds = self.session(threads), self.feeds
        return lambda: sess.run(None, feeds)

    def output(self) -> np.ndarray:
        return self.prepare("forward", 1)()[0]


class Reference(Impl):
    """The cell's NumPy reference (fastlstm.reference, reference_gru) in float32;
    skipped where one call is estimated to take > SLOW_S."""

    name = "numpy-ref"

    @staticmethod
    def supports(case: Case) -> bool:
        return not case.shape.step  # the reference has whole sequences only

    def __init__(self, case: Case):
        s, cell = case.shape, CELLS[case.cell]
        ref = importlib.import_module(cell.reference)
        self.forward = getattr(ref, cell.ref_forward)
        self.backward = getattr(ref, cell.ref_backward)
        self.case = case
        self.kw = dict(num_layers=s.layers, hidden_size=s.H, bidirectional=s.bidirectional,
                       dtype=np.float32, **({"proj_size": s.proj} if cell.proj else {}))

    def _call(self, mode: str, T: int) -> Callable:
        """The timed call on the first T steps (T < shape.T only to estimate the cost)."""
        c, forward, backward, kw = self.case, self.forward, self.backward, self.kw
        x, dy = c.x[:T], c.dy[:T]
        lengths = None if c.lengths is None else np.minimum(c.lengths, T)
        if mode == "forward":
            return lambda: forward(x, c.state, lengths=lengths, **kw)

        def step():
            *_, cache = forward(x, c.state, lengths=lengths, **kw)
            backward(cache, dy)

        return step

    def estimate_s(self, mode: str) -> float:
        """Seconds for one full call, extrapolated from one call on ~T/10 steps."""
        s, lengths = self.case.shape, self.case.lengths
        T = max(1, math.ceil(s.T / 10))
        t0 = time.perf_counter()
        self._call(mode, T)()
        probe = time.perf_counter() - t0
        short = None if lengths is None else np.minimum(lengths, T)
        cell = self.case.cell
        return probe * forward_flops(s, lengths, cell=cell) / forward_flops(s, short, T=T,
                                                                            cell=cell)

    def prepare(self, mode: str, threads: int) -> Callable | str:
        if self.estimate_s(mode) > SLOW_S:
            return "skipped (slow)"
        return self._call(mode, self.case.shape.T)

    def output(self) -> np.ndarray:
        return self._call("forward", self.case.shape.T)()[0]


PEERS_BY_NAME = {"torch": (Torch, ("torch",)),
                 "onnxruntime": (OnnxRuntime, ("onnx", "onnxruntime")),
                 "numpy-ref": (Reference, ("fastlstm.reference",))}


def error_status(e: Exception) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"error: {type(e).__name__}: {first[:300]}"


def make_peer(name: str, case: Case):
    """The named peer for this case, or Unavailable ("not installed", "n/a", "error: ...")."""
    cls, modules = PEERS_BY_NAME[name]
    if any(optional(module) is None for module in modules):
        return Unavailable(name, "not installed")
    if not cls.supports(case):
        return Unavailable(name, "n/a")
    try:
        return cls(case)
    except Exception as e:  # a broken peer must not end the run
        return Unavailable(name, error_status(e))


def make_impls(case: Case) -> list:
    """fastlstm and every peer, in IMPLS order."""
    return [FastLSTM(case)] + [make_peer(name, case) for name in PEERS]


# --------------------------------------------------------------------------- timing


@dataclass
class Result:
    shape: str
    threads: int
    mode: str
    impl: str
    flops: float
    status: str = "ok"
    samples_ms: list = field(default_factory=list)
    max_abs_diff: float | None = None  # forward y vs fastlstm's, at the first thread count
    warnings: list = field(default_factory=list)
    # fastlstm only: calls each made right after a weight update (they repack the weights)
    cold_samples_ms: list = field(default_factory=list)
    cold_invalidation: str | None = None  # how the weights were marked changed
    peak_gflops: float | None = None  # measured fp32 GEMM peak at this thread count
    cell: str = "lstm"

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.samples_ms) if self.samples_ms else None

    @property
    def cold_median_ms(self) -> float | None:
        return statistics.median(self.cold_samples_ms) if self.cold_samples_ms else None

    @property
    def gflops(self) -> float | None:
        ms = self.median_ms
        return self.flops / (ms * 1e6) if ms else None

    @property
    def pct_peak(self) -> float | None:
        return pct_peak(self.gflops, self.peak_gflops)

    def to_json(self) -> dict:
        return {**asdict(self), "median_ms": self.median_ms, "gflops": self.gflops,
                "pct_peak": self.pct_peak, "cold_median_ms": self.cold_median_ms}


def pct_peak(gflops: float | None, peak_gflops: float | None) -> float | None:
    """gflops as a percentage of peak_gflops, or None when either is unknown."""
    if gflops is None or peak_gflops is None or not peak_gflops > 0:
        return None
    return 100.0 * gflops / peak_gflops


@dataclass
class Timing:
    min_time: float = 0.3
    min_reps: int = 5
    warmup_time: float = 0.2
    max_warmup: int = 3
    cold_min_reps: int = 3  # fastlstm's cold calls (each after a weight update), capped by min_reps
    cold_min_time: float = 0.1  # capped by min_time

    def cold(self) -> "Timing":
        """The timing of cold calls: no warm-up (the warm measurement just ran), fewer calls."""
        return Timing(min_time=min(self.cold_min_time, self.min_time),
                      min_reps=max(1, min(self.cold_min_reps, self.min_reps)),
                      warmup_time=0.0, max_warmup=0)


def measure(fn: Callable, timing: Timing, setup: Callable | None = None) -> list:
    """Warm up, then time calls until both min_reps and min_time are reached; samples in ms.

    ``setup``, if given, runs before each timed call, outside the timed region.
    """
    t_end = time.perf_counter() + timing.warmup_time
    for _ in range(timing.max_warmup):
        fn()
        if time.perf_counter() > t_end:
            break
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(samples) < timing.min_reps or sum(samples) < timing.min_time:
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return [s * 1e3 for s in samples]


def blas_threads(n: int):
    """A context limiting NumPy's BLAS to n threads (a no-op without threadpoolctl)."""
    tpc = optional("threadpoolctl")
    return tpc.threadpool_limits(limits=n, user_api="blas") if tpc else contextlib.nullcontext()


# --------------------------------------------------------------------------- GEMM peak

GEMM_N = 2048  # square float32 matrices: 2*N^3 FLOPs per product
PEAK_BUDGET_S = 1.5  # seconds of products per thread count, shared by the sources
PEAK_MIN_REPS, PEAK_MAX_REPS = 3, 50


@dataclass
class Peak:
    """The measured fp32 GEMM rate at one thread count: the best of its sources."""

    threads: int
    n: int = GEMM_N
    gflops: float | None = None  # fastest rate over the sources, None if none ran
    source: str = ""  # the source that gave ``gflops``
    by_source: dict = field(default_factory=dict)  # source -> {"gflops", "samples_ms"} or error
    blas_default_threads: bool = False  # numpy ran with its BLAS's own thread count


def peak_sources(have_torch: bool, have_threadpoolctl: bool) -> list:
    """The GEMMs to time: torch.mm, and numpy matmul where its threads can be limited.

    Without threadpoolctl NumPy's BLAS uses its own thread count, so numpy is used
    only when torch is missing too (and the peak is then noted as such).
    """
    sources = ["torch.mm"] if have_torch else []
    if have_threadpoolctl or not have_torch:
        sources.append("numpy matmul")
    return sources


def time_gemm(mm: Callable, budget_s: float) -> list:
    """Samples (ms) of ``mm()``: one warm-up, then enough calls to fill budget_s."""
    mm()
    t0 = time.perf_counter()
    mm()
    first = time.perf_counter() - t0
    reps = int(min(PEAK_MAX_REPS, max(PEAK_MIN_REPS, budget_s / max(first, 1e-9))))
    samples = [first]
    for _ in range(reps - 1):
        t0 = time.perf_counter()
        mm()
        samples.append(time.perf_counter() - t0)
    return [v * 1e3 for v in samples]


@contextlib.contextmanager
def gemm(source: str, threads: int, n: int):
    """``mm()`` for one n x n float32 product on the given source and thread count."""
    if source == "torch.mm":
        import torch

        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            g = torch.Generator().manual_seed(0)
            a, b = (torch.randn(n, n, generator=g) for _ in range(2))
            out = torch.empty(n, n)
            yield lambda: torch.mm(a, b, out=out)
        finally:
            torch.set_num_threads(saved)
    else:
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        out = np.empty((n, n), np.float32)
        with blas_threads(threads):
            yield lambda: np.matmul(a, b, out=out)


def gemm_peak(threads: int, n: int = GEMM_N, budget_s: float = PEAK_BUDGET_S) -> Peak:
    """The machine's fp32 GEMM rate at ``threads``: the fastest call over the sources
    (a peak is what the machine can do; on a shared machine medians only sink)."""
    have_tpc = optional("threadpoolctl") is not None
    sources = peak_sources(optional("torch") is not None, have_tpc)
    peak = Peak(threads, n, blas_default_threads="numpy matmul" in sources and not have_tpc)
    for source in sources:
        try:
            with gemm(source, threads, n) as mm:
                samples = time_gemm(mm, budget_s / len(sources))
        except Exception as e:  # a broken source must not end the run
            peak.by_source[source] = {"error": error_status(e)}
            continue
        rate = 2.0 * n**3 / (min(samples) * 1e6)
        peak.by_source[source] = {"gflops": rate, "samples_ms": samples}
        if peak.gflops is None or rate > peak.gflops:
            peak.gflops, peak.source = rate, source
    return peak


def best_peaks(first: list, second: list) -> list:
    """Per thread count, the higher of two peak measurements."""
    return [b if (b.gflops or 0.0) > (a.gflops or 0.0) else a for a, b in zip(first, second)]


def measure_peaks(threads: list) -> list:
    peaks = []
    for n in threads:
        print(f"peak t={n}: fp32 GEMM {GEMM_N}^3 ...", end=" ", file=sys.stderr, flush=True)
        peaks.append(gemm_peak(n))
        p = peaks[-1]
        print("failed" if p.gflops is None else f"{p.gflops:.1f} GFLOP/s ({p.source})",
              file=sys.stderr, flush=True)
    return peaks


def peak_line(peaks: list) -> str:
    """``peak fp32 GEMM: 1 thread X GFLOP/s, 2 threads Y GFLOP/s (torch.mm 2048^3)``."""
    if not peaks:
        return "peak fp32 GEMM: not measured"
    sources = {p.source for p in peaks if p.gflops is not None}
    parts = []
    for p in peaks:
        rate = "not measured" if p.gflops is None else f"{p.gflops:.1f} GFLOP/s"
        if len(sources) > 1 and p.gflops is not None:
            rate += f" ({p.source})"
        parts.append(f"{p.threads} thread{'s' if p.threads != 1 else ''} {rate}")
    sizes = sorted({p.n for p in peaks})
    what = f"{next(iter(sources))} " if len(sources) == 1 else ""
    return f"peak fp32 GEMM: {', '.join(parts)} ({what}{'/'.join(map(str, sizes))}^3)"


def attach_peaks(results: list, peaks: list) -> None:
    """Give each result the peak at its thread count (for % peak)."""
    by_threads = {p.threads: p.gflops for p in peaks}
    for r in results:
        r.peak_gflops = by_threads.get(r.threads)


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


class Progress:
    """One line per measurement on stderr: ``[3/40] mid t=2 torch forward ... 1.23 ms``."""

    def __init__(self, total: int):
        self.total, self.done = total, 0

    def start(self, shape: str, threads: int, impl: str, mode: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {shape} t={threads} {impl} {mode} ...",
              end=" ", file=sys.stderr, flush=True)

    def end(self, r: Result) -> None:
        text = f"{fmt_ms(r.median_ms)} ms" if r.samples_ms else r.status
        if r.cold_samples_ms:
            text += f" (cold {fmt_ms(r.cold_median_ms)} ms)"
        print(text, file=sys.stderr, flush=True)


def run_one(impl, case: Case, mode: str, threads: int, timing: Timing) -> Result:
    """Time one implementation; its warnings are kept for the notes, off the progress line."""
    r = Result(case.shape.name, threads, mode, impl.name,
               mode_flops(case.shape, mode, case.lengths, cell=case.cell), cell=case.cell)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn = impl.prepare(mode, threads)
            if isinstance(fn, str):
                r.status = fn
            else:
                r.samples_ms = measure(fn, timing)
                invalidate = getattr(impl, "invalidate", None)
                if invalidate is not None:  # fastlstm: the first call after a weight update
                    r.cold_invalidation = impl.invalidation
                    r.cold_samples_ms = measure(fn, timing.cold(), setup=invalidate)
        except Exception as e:  # a failing peer must not end the run
            r.status = error_status(e)
    r.warnings = sorted({str(w.message).strip().splitlines()[0] for w in caught})
    return r


def check_outputs(impls: list, results: list) -> None:
    """Record max|y - y_fastlstm| of each forward that ran (a check that all compute the same)."""
    try:
        y0 = impls[0].output()
        for impl, r in zip(impls[1:], results[1:]):
            if r.samples_ms:
                r.max_abs_diff = max_abs_diff(impl.output(), y0)
    except Exception as e:
        print(f"output check failed: {type(e).__name__}: {e}", file=sys.stderr)


def run_shape(shape: Shape, threads: list, modes: list, timing: Timing, progress: Progress,
              cell: str = "lstm") -> list:
    case = make_case(shape, cell)
    impls = make_impls(case)
    results = []
    for n in threads:
        with blas_threads(n):
            for mode in [m for m in modes if m in shape.modes]:
                row = []
                for impl in impls:
                    progress.start(shape.name, n, impl.name, mode)
                    r = run_one(impl, case, mode, n, timing)
                    progress.end(r)
                    row.append(r)
                if n == threads[0] and mode == "forward":
                    check_outputs(impls, row)
                results += row
    return results


# --------------------------------------------------------------------------- report


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    digits = 3 if ms < 10 else 2 if ms < 100 else 1 if ms < 1000 else 0
    return f"{ms:.{digits}f}"


def ratio(r: Result | None, base: Result | None) -> float | None:
    if r is None or base is None or not r.samples_ms or not base.samples_ms:
        return None
    return r.median_ms / base.median_ms


def fmt_pct(pct: float | None) -> str:
    """A % of peak: ``"-"`` when unknown, one decimal below 10%, else a whole number."""
    if pct is None or not math.isfinite(pct):
        return "-"
    return f"{pct:.1f}%" if pct < 9.95 else f"{pct:.0f}%"


# (header, width) of each implementation's columns in the table
FAST_COLUMNS = (("ms", 8), ("GFLOP/s", 8), ("%pk", 6), ("cold", 8))
PEER_COLUMNS = (("ms", 8), ("GFLOP/s", 8), ("ratio", 7))


def columns(name: str) -> tuple:
    return PEER_COLUMNS if name in PEERS else FAST_COLUMNS


def cell(r: Result | None, base: Result | None, peer: bool) -> str:
    """One implementation's columns.

    fastlstm: ms, GFLOP/s, % of the GEMM peak, cold ms; a peer: ms, GFLOP/s and
    its time / fastlstm's.
    """
    width = sum(w for _, w in (PEER_COLUMNS if peer else FAST_COLUMNS))
    if r is None:
        return " " * width
    if not r.samples_ms:
        status = "error" if r.status.startswith("error") else r.status
        return f"{status:>{width}}"
    text = f"{fmt_ms(r.median_ms):>8}{r.gflops:8.1f}"
    if peer:
        x = ratio(r, base)
        text += f"{x:6.2f}x" if x is not None else f"{'-':>7}"
    else:
        text += f"{fmt_pct(r.pct_peak):>6}{fmt_ms(r.cold_median_ms):>8}"
    return text


def table(results: list) -> str:
    """The results as a text table, one row per (shape, threads, mode)."""
    head1 = f"{'':10}{'':>3} {'':8}" + "".join(
        f"{name:>{sum(w for _, w in columns(name))}}" for name in IMPLS)
    head2 = f"{'shape':10}{'t':>3} {'mode':8}" + "".join(
        "".join(f"{h:>{w}}" for h, w in columns(name)) for name in IMPLS)
    lines = [head1, head2, "-" * len(head2)]
    rows: dict = {}
    for r in results:
        rows.setdefault((r.shape, r.threads, r.mode), {})[r.impl] = r
    for (shape, threads, mode), by_impl in rows.items():
        base = by_impl.get("fastlstm")
        lines.append(f"{shape:10}{threads:>3} {mode:8}" + "".join(
            cell(by_impl.get(name), base, name in PEERS) for name in IMPLS))
    lines.append("ratio = peer time / fastlstm time (> 1: fastlstm is faster); "
                 f"a training step counts {TRAIN_FLOPS_FACTOR}x the forward FLOPs")
    lines.append("%pk = fastlstm GFLOP/s / the measured fp32 GEMM peak at the same thread count")
    lines.append("cold = fastlstm median ms of calls each made right after a weight update "
                 "(they repack the weights); ms, GFLOP/s, %pk and ratio are warm")
    return "\n".join(lines)


@contextlib.contextmanager
def competing_load(n: int):
    """n other processes that each keep a CPU busy (a pure-Python loop) while
    the block runs: what a call gets on a shared machine. Stopped on exit."""
    import subprocess
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
             for _ in range(n)]
    try:
        time.sleep(0.2 if n else 0.0)  # let them reach the CPUs
        yield
    finally:
        for q in procs:
            q.kill()
        for q in procs:
            q.wait()


class CpuWatch:
    """How busy other processes kept the CPUs while this one ran (Linux; else unknown)."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        """(wall s, CPU-s of the whole machine busy, CPU-s of this process) or None."""
        try:
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait
        own = os.times()
        return time.perf_counter(), busy, own.user + own.system

    def others_share(self) -> float | None:
        """The share of all CPUs' time that other processes used since the start."""
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall, busy, own = (e - s for e, s in zip(end, self.start))
        return max(0.0, busy - own) / (wall * (os.cpu_count() or 1)) if wall > 0 else None


def notes(results: list, others_share: float | None = None, peaks: list | None = None) -> list:
    """Caveats to print under the table."""
    out = []
    if others_share is not None and others_share > 0.05:
        out.append(f"other processes used {others_share:.0%} of the CPUs' time during the run: "
                   "the timings may be disturbed")
    if optional("threadpoolctl") is None:
        out.append("threadpoolctl is not installed: the NumPy reference uses its BLAS's default "
                   "thread count whatever the t column says")
    for p in peaks or []:
        if p.blas_default_threads:
            out.append(f"peak t={p.threads}: torch and threadpoolctl are not installed, so the "
                       "GEMM peak is numpy matmul with its BLAS's default thread count")
        out += [f"peak t={p.threads}: {source}: {v['error']}"
                for source, v in p.by_source.items() if "error" in v]
    ran = {r.impl for r in results if r.samples_ms}
    how = sorted({r.cold_invalidation for r in results if r.cold_samples_ms})
    if how:
        out.append(f"fastlstm cold: before each cold call the weights are marked changed "
                   f"({' / '.join(how)}) outside the timed region, so the call repacks them; "
                   "in a training loop every step follows a weight update, so in train mode "
                   "the cold column is what each step costs")
    torch_cells = {r.cell for r in results if r.impl == "torch" and r.samples_ms}
    if "lstm" in torch_cells:
        out.append("torch: torch.nn.LSTM reorders its weights inside every call, so all its "
                   "timings are already 'cold' (no separate cold column)")
    if "gru" in torch_cells:
        out.append("torch: torch.nn.GRU runs ATen's generic loop (aten::gru: one linear per "
                   "step, no oneDNN) on its parameters as they are, so it has nothing to "
                   "prepare and no cold column")
    if "onnxruntime" in ran:
        out.append("onnxruntime: the weights are session initializers, prepared once when the "
                   "session is built (untimed); updating them means a new session, so there is "
                   "no cold column")
    for r in results:
        where = f"{r.shape} t={r.threads} {r.impl} {r.mode}"
        if r.status.startswith("error"):
            out.append(f"{where}: {r.status}")
        out += [f"{where}: warning: {w}" for w in r.warnings]
        if r.max_abs_diff is not None and r.max_abs_diff > 1e-3:
            out.append(f"{r.shape}: {r.impl} forward differs from fastlstm by {r.max_abs_diff:.3g}")
    return out


def versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__,
           "fastlstm": getattr(fastlstm, "__version__", "?")}
    for name in ("torch", "onnx", "onnxruntime", "threadpoolctl"):
        module = optional(name)
        out[name] = module.__version__ if module else "not installed"
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k.split("_")[0] in ("OMP", "GOMP", "KMP", "MKL", "OPENBLAS", "FASTLSTM")}
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "env": env}
    if hasattr(os, "getloadavg"):
        info["loadavg"] = os.getloadavg()
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(Exception):
        info["numpy_blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    with contextlib.suppress(Exception):
        info["fastlstm"] = fastlstm.info()
    if optional("threadpoolctl"):
        info["threadpools"] = optional("threadpoolctl").threadpool_info()
    return info


def save_json(path: str, results: list, settings: dict, others_share: float | None,
              peaks: list | None = None, skipped: list | None = None) -> None:
    doc = {"machine": {**machine(), "others_cpu_share": others_share}, "versions": versions(),
           "settings": settings, "shapes": {r.shape: asdict(SHAPES[r.shape]) for r in results},
           "peak": {"summary": peak_line(peaks or []),
                    "by_threads": [asdict(p) for p in peaks or []]},
           "notes": (skipped or []) + notes(results, others_share, peaks),
           "results": [r.to_json() for r in results]}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


NO_MATPLOTLIB = ("matplotlib is not installed: --plot skipped "
                 "(pip install matplotlib; fastlstm's `bench` extra has it)")


def speedups(results: list) -> dict:
    """{mode: {(shape, threads): {peer: peer time / fastlstm time or None}}}, in run order."""
    rows: dict = {}
    for r in results:
        rows.setdefault(r.mode, {}).setdefault((r.shape, r.threads), {})[r.impl] = r
    return {mode: {key: {peer: ratio(g.get(peer), g.get("fastlstm")) for peer in PEERS}
                   for key, g in groups.items()}
            for mode, groups in rows.items()}


def plot(path: str, results: list) -> bool:
    """Bar chart of each peer's time / fastlstm's per shape and threads (one panel per mode).

    Without matplotlib it prints one line to stderr and returns False; the run goes on.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        print(NO_MATPLOTLIB, file=sys.stderr)
        return False
    rows = speedups(results)
    fig, axes = plt.subplots(max(1, len(rows)), 1, figsize=(12, 4 * max(1, len(rows))),
                             squeeze=False)
    for ax, (mode, groups) in zip(axes[:, 0], rows.items()):
        labels = [f"{shape}\nt={n}" for shape, n in groups]
        by_peer = {peer: [g[peer] for g in groups.values()] for peer in PEERS}
        by_peer = {p: v for p, v in by_peer.items() if any(x is not None for x in v)}
        cells = sorted({r.cell for r in results if r.mode == mode})
        what = " ".join(["fastlstm"] + [CELLS[c].layer for c in cells if c != "lstm"])
        ax.set_title(f"{what} {mode}: > 1 means fastlstm is faster")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlim(-0.5, len(labels) - 0.5)
        if not by_peer:
            ax.text(0.5, 0.5, "no peer ran", transform=ax.transAxes, ha="center")
            continue
        width = 0.8 / len(by_peer)
        for j, (peer, values) in enumerate(by_peer.items()):
            xs = [i + (j - (len(by_peer) - 1) / 2) * width for i in range(len(labels))]
            heights = [np.nan if v is None else v - 1.0 for v in values]  # bars grow from 1
            bars = ax.bar(xs, heights, width, bottom=1.0, color=f"C{PEERS.index(peer)}",
                          label=f"vs {peer}")
            ax.bar_label(bars, ["" if v is None else f"{v:.2g}x" for v in values], fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("speedup (peer time / fastlstm time)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot saved to {path}", file=sys.stderr)
    return True


# --------------------------------------------------------------------------- command line


def parse_args(argv: list | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fastlstm bench", description=__doc__.splitlines()[0])
    p.add_argument("--cell", default="lstm", choices=tuple(CELLS),
                   help="the recurrent cell to time: lstm (default; fastlstm.LSTM vs "
                        "torch.nn.LSTM, ONNX LSTM), gru (fastlstm.GRU vs torch.nn.GRU, ONNX "
                        "GRU with linear_before_reset=1) or lnlstm (fastlstm.LayerNormLSTM vs "
                        "the same equations in plain torch ops; ONNX has no such op)")
    p.add_argument("--shapes", help=f"comma-separated subset of {','.join(SHAPES)} (default: "
                                    "all the cell has: the GRU has no projection, so no proj; "
                                    "the layer-norm LSTM no step cell, so no cell either)")
    p.add_argument("--threads", help="comma-separated thread counts (default: 1,2)")
    p.add_argument("--modes", default=",".join(MODES), help="forward,train (default: both)")
    p.add_argument("--quick", action="store_true",
                   help=f"{','.join(QUICK_SHAPES)} on 2 threads with fewer repeats")
    p.add_argument("--min-time", type=float, help="seconds of timed calls per measurement (0.3)")
    p.add_argument("--min-reps", type=int, help="timed calls per measurement at least (5)")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="time the shapes while N other processes keep a CPU busy each (a "
                        "shared machine; try N = the CPU count). The GEMM peak is measured "
                        "without them")
    p.add_argument("--json", metavar="FILE", help="save all results and samples as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="bar chart of speedups, peer time / fastlstm time (needs matplotlib; "
                        "skipped with a message without it)")
    args = p.parse_args(argv)
    shapes_given = args.shapes is not None
    args.shapes = split(args.shapes or (",".join(QUICK_SHAPES) if args.quick else ",".join(SHAPES)))
    args.modes = split(args.modes)
    try:
        args.threads = [int(n) for n in split(args.threads or ("2" if args.quick else "1,2"))]
    except ValueError:
        p.error("--threads takes comma-separated integers")
    for name, given, known in (("shape", args.shapes, SHAPES), ("mode", args.modes, MODES)):
        if any(g not in known for g in given):
            p.error(f"unknown {name} in {given}; choose from {','.join(known)}")
    if any(n < 1 for n in args.threads):
        p.error("--threads must be >= 1")
    if args.load < 0:
        p.error("--load must be >= 0")
    unsupported = [name for name in args.shapes if not SHAPES[name].supports(args.cell)]
    if unsupported and shapes_given:
        p.error(f"--cell {args.cell}: " + "; ".join(
            f"{SHAPES[name].why_not(args.cell)}: drop {name} from --shapes"
            for name in unsupported))
    args.skipped = [f"{name}: skipped, {SHAPES[name].why_not(args.cell)}" for name in unsupported]
    args.shapes = [name for name in args.shapes if name not in unsupported]
    return args


def split(text: str) -> list:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    quick = Timing(min_time=0.1, min_reps=3, warmup_time=0.05, max_warmup=2, cold_min_time=0.03)
    timing = quick if args.quick else Timing()
    timing.min_time = args.min_time if args.min_time is not None else timing.min_time
    timing.min_reps = args.min_reps if args.min_reps is not None else timing.min_reps
    shapes = [SHAPES[name] for name in args.shapes]
    progress = Progress(sum(len([m for m in args.modes if m in s.modes]) for s in shapes)
                        * len(args.threads) * len(IMPLS))
    results, watch = [], CpuWatch()
    peaks = measure_peaks(args.threads)  # before and after the shapes: the best of both
    for line in args.skipped:
        print(line, file=sys.stderr, flush=True)
    stalls0 = fastlstm.adaptive_threads_state()["stalls"]
    with competing_load(args.load):
        for shape in shapes:
            print(f"{shape.name}: {shape.describe()}", file=sys.stderr, flush=True)
            results += run_shape(shape, args.threads, args.modes, timing, progress, args.cell)
    stalls = fastlstm.adaptive_threads_state()["stalls"] - stalls0
    peaks = best_peaks(peaks, measure_peaks(args.threads))
    attach_peaks(results, peaks)
    others_share = watch.others_share()
    v = versions()
    cell = "" if args.cell == "lstm" else f" | cell {args.cell}: fastlstm.{CELLS[args.cell].layer}"
    print(f"fastlstm {v['fastlstm']} | numpy {v['numpy']} | torch {v['torch']} | "
          f"onnxruntime {v['onnxruntime']} | {cpu_model()}, {os.cpu_count()} cpus | float32"
          + cell)
    print(peak_line(peaks))
    print(table(results))
    extra = [f"--load {args.load}: {args.load} busy processes competed for the CPUs while the "
             "shapes ran (not while the peak was measured)"] if args.load else []
    if stalls:
        extra.append(f"fastlstm: {stalls} multi-thread calls stalled on a preempted thread; "
                     "each made the calls of the next 0.1-3.2 s run on half the threads "
                     "(fastlstm.set_adaptive_threads)")
    for line in args.skipped + extra + notes(results, others_share, peaks):
        print(f"note: {line}")
    if args.json:
        settings = {"cell": args.cell, "threads": args.threads, "modes": args.modes,
                    "quick": args.quick, "load": args.load, "adaptive_stalls": stalls,
                    "timing": asdict(timing),
                    "cold_timing": asdict(timing.cold()),
                    "peak": {"n": GEMM_N, "budget_s": PEAK_BUDGET_S}}
        save_json(args.json, results, settings, others_share, peaks, args.skipped)
        print(f"results saved to {args.json}", file=sys.stderr)
    if args.plot:
        plot(args.plot, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
