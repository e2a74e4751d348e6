"""Side-by-side benchmark: fastlstm vs the NumPy reference, torch.nn.LSTM and ONNX Runtime.

Run ``python -m fastlstm bench --help``. Every implementation gets the same
weights, inputs, thread count and dtype (float32); peers are timed the way their
users call them (the module holds its weights, the timed call is the forward, or
the forward plus backward). Missing peers are reported, never fatal.
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

MODES = ("forward", "train")
IMPLS = ("fastlstm", "torch", "onnxruntime", "numpy-ref")
PEERS = IMPLS[1:]
SLOW_S = 3.0  # skip the NumPy reference when one call is estimated slower than this
TRAIN_FLOPS_FACTOR = 3  # a training step counts 3x the forward FLOPs


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
        return " ".join([f"T={self.T} B={self.B} I={self.I} H={self.H}"] + extra)


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
    )
}
QUICK_SHAPES = ("stream", "small")


def make_lengths(shape: Shape) -> np.ndarray | None:
    """Per-row lengths, uniform in [T//4, T] (seeded), or None for a full batch."""
    if not shape.varlen:
        return None
    return np.random.default_rng(0).integers(shape.T // 4, shape.T + 1, size=shape.B)


def forward_flops(shape: Shape, lengths: np.ndarray | None = None, T: int | None = None) -> float:
    """FLOPs of one forward: 2*steps*4H*(I+H_out) (+2*steps*H*P) per layer and direction."""
    T = shape.T if T is None else T
    steps = float(np.sum(lengths)) if lengths is not None else float(T * shape.B)
    total = 0.0
    for k in range(shape.layers):
        in_size = shape.I if k == 0 else shape.D * shape.H_out
        per_step = 2 * 4 * shape.H * (in_size + shape.H_out) + 2 * shape.H * shape.proj
        total += shape.D * steps * per_step
    return total


def mode_flops(shape: Shape, mode: str, lengths: np.ndarray | None = None) -> float:
    factor = TRAIN_FLOPS_FACTOR if mode == "train" else 1
    return factor * forward_flops(shape, lengths)


# --------------------------------------------------------------------------- the case


@dataclass
class Case:
    """What every implementation shares for one shape: weights and data."""

    shape: Shape
    model: fastlstm.LSTM
    state: dict
    x: np.ndarray  # [T,B,I]
    dy: np.ndarray  # [T,B,D*H_out], zero past each row's length
    lengths: np.ndarray | None


def make_case(shape: Shape) -> Case:
    model = fastlstm.LSTM(
        shape.I, shape.H, num_layers=shape.layers, bidirectional=shape.bidirectional,
        proj_size=shape.proj, dtype=np.float32, seed=0,
    )
    state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in model.state_dict().items()}
    rng = np.random.default_rng(1)
    x = rng.standard_normal((shape.T, shape.B, shape.I), dtype=np.float32)
    dy = rng.standard_normal((shape.T, shape.B, shape.D * shape.H_out), dtype=np.float32)
    lengths = make_lengths(shape)
    if lengths is not None:
        dy[np.arange(shape.T)[:, None] >= lengths[None, :]] = 0.0
    return Case(shape, model, state, x, dy, lengths)


# --------------------------------------------------------------------------- implementations


class Impl:
    """An implementation under test.

    ``prepare(mode, threads)`` returns the callable to time, or a status string
    ("-", "n/a", "skipped (slow)"); ``output()`` returns the forward's
    y [T,B,D*H_out] (for a sanity check against fastlstm).
    """

    name = ""

    @staticmethod
    def supports(shape: Shape) -> bool:
        return True


class Unavailable(Impl):
    """A peer that cannot run here; every measurement reports ``status``."""

    def __init__(self, name: str, status: str):
        self.name, self.status = name, status

    def prepare(self, mode: str, threads: int) -> str:
        return self.status

    def output(self) -> None:
        return None


class FastLSTM(Impl):
    name = "fastlstm"

    def __init__(self, case: Case):
        self.case, self.lstm = case, case.model

    def prepare(self, mode: str, threads: int) -> Callable:
        fastlstm.set_num_threads(threads)
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

    def output(self) -> np.ndarray:
        return self.prepare("forward", fastlstm.get_num_threads())()[0]


class Torch(Impl):
    name = "torch"

    def __init__(self, case: Case):
        import torch

        s = case.shape
        self.torch, self.T = torch, s.T
        self.module = torch.nn.LSTM(s.I, s.H, num_layers=s.layers,
                                    bidirectional=s.bidirectional, proj_size=s.proj)
        self.module.load_state_dict({k: torch.from_numpy(v) for k, v in case.state.items()})
        self.x, self.dy = torch.from_numpy(case.x), torch.from_numpy(case.dy)
        self.lengths = None if case.lengths is None else torch.from_numpy(case.lengths.astype(np.int64))

    def _run(self, x):
        """y [T,B,D*H_out]; a variable-length batch is packed, as users do."""
        if self.lengths is None:
            return self.module(x)[0]
        rnn = self.torch.nn.utils.rnn
        packed = rnn.pack_padded_sequence(x, self.lengths, enforce_sorted=False)
        return rnn.pad_packed_sequence(self.module(packed)[0], total_length=self.T)[0]

    def prepare(self, mode: str, threads: int) -> Callable:
        torch, module = self.torch, self.module
        torch.set_num_threads(threads)
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
        return self.prepare("forward", self.torch.get_num_threads())().numpy()


ONNX_OPSET = 17  # the IR version is the lowest that supports it, so older runtimes load it
ONNX_GATE_ORDER = (0, 3, 1, 2)  # ONNX i,o,f,c taken from torch's i,f,g,o blocks


def onnx_gates(a: np.ndarray, H: int) -> np.ndarray:
    """Reorder the 4H gate rows of a weight or bias from torch's to ONNX's order."""
    return np.concatenate([a[g * H:(g + 1) * H] for g in ONNX_GATE_ORDER])


def onnx_layer_weights(state: dict, k: int, D: int, H: int):
    """ONNX W [D,4H,I], R [D,4H,H], B [D,8H] for layer k from a torch-style state dict."""
    sfx = [f"_l{k}", f"_l{k}_reverse"][:D]
    W = np.stack([onnx_gates(state["weight_ih" + s], H) for s in sfx])
    R = np.stack([onnx_gates(state["weight_hh" + s], H) for s in sfx])
    B = np.stack([np.concatenate([onnx_gates(state["bias_ih" + s], H),
                                  onnx_gates(state["bias_hh" + s], H)]) for s in sfx])
    return W, R, B


def onnx_lstm_model(state: dict, shape: Shape):
    """A chain of standard ONNX LSTM nodes, X [T,B,I] (+ sequence_lens [B]) -> Y [T,B,D*H].

    Between layers (and at the end) Y [T,D,B,H] is transposed and reshaped to
    torch's [T,B,D*H] layout.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if shape.proj:
        raise ValueError("ONNX LSTM has no projection")
    T, B, H, D = shape.T, shape.B, shape.H, shape.D
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, shape.I])]
    seq = []
    if shape.varlen:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]))
        seq = ["sequence_lens"]
    inits = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "tbh")]
    nodes, x = [], "X"
    for k in range(shape.layers):
        for name, a in zip("WRB", onnx_layer_weights(state, k, D, H)):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(a, np.float32), f"{name}{k}"))
        y = "Y" if k == shape.layers - 1 else f"layer{k}"
        nodes += [
            helper.make_node("LSTM", [x, f"W{k}", f"R{k}", f"B{k}"] + seq, [f"Y{k}"], name=f"lstm{k}",
                             hidden_size=H, direction="bidirectional" if D == 2 else "forward"),
            helper.make_node("Transpose", [f"Y{k}"], [f"Y{k}_t"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"Y{k}_t", "tbh"], [y]),
        ]
        x = y
    out = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, B, D * H])
    graph = helper.make_graph(nodes, f"lstm_{shape.name}", inputs, [out], inits)
    opset = helper.make_opsetid("", ONNX_OPSET)
    model = helper.make_model(graph, opset_imports=[opset],
                              ir_version=helper.find_min_ir_version_for([opset]))
    onnx.checker.check_model(model)
    return model


class OnnxRuntime(Impl):
    name = "onnxruntime"

    @staticmethod
    def supports(shape: Shape) -> bool:
        return not shape.proj  # ONNX LSTM has no projection

    def __init__(self, case: Case):
        import onnxruntime

        self.ort, self.sessions = onnxruntime, {}
        self.model = onnx_lstm_model(case.state, case.shape).SerializeToString()
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
    """fastlstm.reference in float32; skipped where one call is estimated to take > SLOW_S."""

    name = "numpy-ref"

    def __init__(self, case: Case):
        from fastlstm import reference

        s = case.shape
        self.ref, self.case = reference, case
        self.kw = dict(num_layers=s.layers, hidden_size=s.H, proj_size=s.proj,
                       bidirectional=s.bidirectional, dtype=np.float32)

    def _call(self, mode: str, T: int) -> Callable:
        """The timed call on the first T steps (T < shape.T only to estimate the cost)."""
        c, ref, kw = self.case, self.ref, self.kw
        x, dy = c.x[:T], c.dy[:T]
        lengths = None if c.lengths is None else np.minimum(c.lengths, T)
        if mode == "forward":
            return lambda: ref.lstm_forward(x, c.state, lengths=lengths, **kw)

        def step():
            *_, cache = ref.lstm_forward(x, c.state, lengths=lengths, **kw)
            ref.lstm_backward(cache, dy)

        return step

    def estimate_s(self, mode: str) -> float:
        """Seconds for one full call, extrapolated from one call on ~T/10 steps."""
        s, lengths = self.case.shape, self.case.lengths
        T = max(1, math.ceil(s.T / 10))
        t0 = time.perf_counter()
        self._call(mode, T)()
        probe = time.perf_counter() - t0
        short = None if lengths is None else np.minimum(lengths, T)
        return probe * forward_flops(s, lengths) / forward_flops(s, short, T=T)

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
    if not cls.supports(case.shape):
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

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.samples_ms) if self.samples_ms else None

    @property
    def gflops(self) -> float | None:
        ms = self.median_ms
        return self.flops / (ms * 1e6) if ms else None

    def to_json(self) -> dict:
        return {**asdict(self), "median_ms": self.median_ms, "gflops": self.gflops}


@dataclass
class Timing:
    min_time: float = 0.3
    min_reps: int = 5
    warmup_time: float = 0.2
    max_warmup: int = 3


def measure(fn: Callable, timing: Timing) -> list:
    """Warm up, then time calls until both min_reps and min_time are reached; samples in ms."""
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
        print(f"{fmt_ms(r.median_ms)} ms" if r.samples_ms else r.status, file=sys.stderr, flush=True)


def run_one(impl, case: Case, mode: str, threads: int, timing: Timing) -> Result:
    """Time one implementation; its warnings are kept for the notes, off the progress line."""
    r = Result(case.shape.name, threads, mode, impl.name, mode_flops(case.shape, mode, case.lengths))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn = impl.prepare(mode, threads)
            if isinstance(fn, str):
                r.status = fn
            else:
                r.samples_ms = measure(fn, timing)
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


def run_shape(shape: Shape, threads: list, modes: list, timing: Timing, progress: Progress) -> list:
    case = make_case(shape)
    impls = make_impls(case)
    results = []
    for n in threads:
        with blas_threads(n):
            for mode in modes:
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


def cell(r: Result | None, base: Result | None, peer: bool) -> str:
    """One implementation's columns: ms, GFLOP/s, and for a peer its time / fastlstm's."""
    width = 8 + 8 + (7 if peer else 0)
    if r is None:
        return " " * width
    if not r.samples_ms:
        status = "error" if r.status.startswith("error") else r.status
        return f"{status:>{width}}"
    text = f"{fmt_ms(r.median_ms):>8}{r.gflops:8.1f}"
    if peer:
        x = ratio(r, base)
        text += f"{x:6.2f}x" if x is not None else f"{'-':>7}"
    return text


def table(results: list) -> str:
    """The results as a text table, one row per (shape, threads, mode)."""
    head1 = f"{'':10}{'':>3} {'':8}" + "".join(
        f"{name:>{16 + (7 if name in PEERS else 0)}}" for name in IMPLS)
    head2 = f"{'shape':10}{'t':>3} {'mode':8}" + "".join(
        f"{'ms':>8}{'GFLOP/s':>8}" + (f"{'ratio':>7}" if name in PEERS else "") for name in IMPLS)
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
    return "\n".join(lines)


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


def notes(results: list, others_share: float | None = None) -> list:
    """Caveats to print under the table."""
    out = []
    if others_share is not None and others_share > 0.05:
        out.append(f"other processes used {others_share:.0%} of the CPUs' time during the run: "
                   "the timings may be disturbed")
    if optional("threadpoolctl") is None:
        out.append("threadpoolctl is not installed: the NumPy reference uses its BLAS's default "
                   "thread count whatever the t column says")
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


def save_json(path: str, results: list, settings: dict, others_share: float | None) -> None:
    doc = {"machine": {**machine(), "others_cpu_share": others_share}, "versions": versions(),
           "settings": settings, "shapes": {r.shape: asdict(SHAPES[r.shape]) for r in results},
           "notes": notes(results, others_share), "results": [r.to_json() for r in results]}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def plot(path: str, results: list) -> None:
    """Bar chart of each peer's time / fastlstm's per shape (one panel per mode)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    rows: dict = {}
    for r in results:
        rows.setdefault(r.mode, {}).setdefault((r.shape, r.threads), {})[r.impl] = r
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 4 * len(rows)), squeeze=False)
    for ax, (mode, groups) in zip(axes[:, 0], rows.items()):
        labels = [f"{shape}\nt={n}" for shape, n in groups]
        speedups = {peer: [ratio(g.get(peer), g.get("fastlstm")) for g in groups.values()]
                    for peer in PEERS}
        speedups = {p: v for p, v in speedups.items() if any(x is not None for x in v)}
        width = 0.8 / max(1, len(speedups))
        for j, (peer, values) in enumerate(speedups.items()):
            xs = [i + (j - (len(speedups) - 1) / 2) * width for i in range(len(labels))]
            heights = [np.nan if v is None else v - 1.0 for v in values]  # bars grow from 1
            bars = ax.bar(xs, heights, width, bottom=1.0, color=f"C{PEERS.index(peer)}",
                          label=f"vs {peer}")
            ax.bar_label(bars, ["" if v is None else f"{v:.2g}x" for v in values], fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylabel("speedup (peer time / fastlstm time)")
        ax.set_title(f"fastlstm {mode}: > 1 means fastlstm is faster")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot saved to {path}", file=sys.stderr)


# --------------------------------------------------------------------------- command line


def parse_args(argv: list | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fastlstm bench", description=__doc__.splitlines()[0])
    p.add_argument("--shapes", help=f"comma-separated subset of {','.join(SHAPES)} (default: all)")
    p.add_argument("--threads", help="comma-separated thread counts (default: 1,2)")
    p.add_argument("--modes", default=",".join(MODES), help="forward,train (default: both)")
    p.add_argument("--quick", action="store_true",
                   help=f"{','.join(QUICK_SHAPES)} on 2 threads with fewer repeats")
    p.add_argument("--min-time", type=float, help="seconds of timed calls per measurement (0.3)")
    p.add_argument("--min-reps", type=int, help="timed calls per measurement at least (5)")
    p.add_argument("--json", metavar="FILE", help="save all results and samples as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of speedups (needs matplotlib)")
    args = p.parse_args(argv)
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
    return args


def split(text: str) -> list:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    quick = Timing(min_time=0.1, min_reps=3, warmup_time=0.05, max_warmup=2)
    timing = quick if args.quick else Timing()
    timing.min_time = args.min_time if args.min_time is not None else timing.min_time
    timing.min_reps = args.min_reps if args.min_reps is not None else timing.min_reps
    shapes = [SHAPES[name] for name in args.shapes]
    progress = Progress(len(shapes) * len(args.threads) * len(args.modes) * len(IMPLS))
    results, watch = [], CpuWatch()
    for shape in shapes:
        print(f"{shape.name}: {shape.describe()}", file=sys.stderr, flush=True)
        results += run_shape(shape, args.threads, args.modes, timing, progress)
    others_share = watch.others_share()
    v = versions()
    print(f"fastlstm {v['fastlstm']} | numpy {v['numpy']} | torch {v['torch']} | "
          f"onnxruntime {v['onnxruntime']} | {cpu_model()}, {os.cpu_count()} cpus | float32")
    print(table(results))
    for line in notes(results, others_share):
        print(f"note: {line}")
    if args.json:
        settings = {"threads": args.threads, "modes": args.modes, "quick": args.quick,
                    "timing": asdict(timing)}
        save_json(args.json, results, settings, others_share)
        print(f"results saved to {args.json}", file=sys.stderr)
    if args.plot:
        plot(args.plot, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
