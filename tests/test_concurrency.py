"""Many Python threads calling fastlstm at once (the kernels release the GIL):
one layer or cell shared by threads in inference, different layers trained
by threads at once, two threads training one layer, fastlstm.set_num_threads
changing under running calls, and fastlstm.torch under DataParallel-style
threading (replicas made with copy.deepcopy, run by plain threads as
torch.nn.parallel.parallel_apply does, which itself needs an accelerator) and
one torch module shared by threads in inference. Every result must equal
bitwise the same work done by one thread beforehand.

Threads start together at a threading.Barrier; every join has a deadline, so
a hang fails the test instead of hanging the suite, and a worker's exception
is raised in the test. (One layer trained by threads in a fixed interleaving
is test_threads_training.py's; processes and devices, test_distributed.py's.)
"""
import copy
import importlib.util
import threading
import time

import numpy as np
import pytest

import fastlstm

pytestmark = pytest.mark.usefixtures("restore_threads")

JOIN_S = 60.0  # every test's threads must be done by then (a hang otherwise)


# --------------------------------------------------------------------------
# helpers


def run_together(workers, timeout=JOIN_S):
    """Run each callable in its own thread, all released at once by a barrier.

    Returns their results in order. A worker's exception is raised here (the
    first one; the other workers run to their end); a thread still running
    after `timeout` seconds fails the test.
    """
    n = len(workers)
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def wrap(i, fn):
        try:
            barrier.wait(timeout)  # (not aborted on an error: that would stop the others)
            results[i] = fn()
        except BaseException as e:  # raised by the test's thread below
            errors.append((i, e))

    threads = [threading.Thread(target=wrap, args=(i, fn), name=f"fastlstm-worker-{i}",
                                daemon=True)  # a hung one must not block the exit
               for i, fn in enumerate(workers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running after {timeout:.0f} s (a hang?): {alive}"
    if errors:
        i, e = errors[0]
        raise AssertionError(f"worker {i} failed: {type(e).__name__}: {e}") from e
    return results


def assert_bitwise(got, want, where=""):
    """Arrays (in tuples, lists, dicts) equal bit for bit: dtype, shape, bytes."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            assert_bitwise(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), where
        for k, (g, w) in enumerate(zip(got, want)):
            assert_bitwise(g, w, f"{where}[{k}]")
    elif want is None:
        assert got is None, where
    else:
        g, w = _np(got), _np(want)
        assert g.dtype == w.dtype and g.shape == w.shape, (
            f"{where}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}")
        if g.tobytes() != w.tobytes():
            diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
            raise AssertionError(f"{where}: differs bitwise from the one-thread run "
                                 f"(max abs diff {np.nanmax(diff):.3e})")


def _np(v):
    if type(v).__module__.startswith("torch"):
        return v.detach().cpu().numpy()
    return np.ascontiguousarray(v)


def rand(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def copies(out):
    """A layer call's results as fresh arrays (y, states...), nested like the call's."""
    if isinstance(out, (tuple, list)):
        return type(out)(copies(v) for v in out)
    return None if out is None else np.array(out)


def overlapped(spans):
    """Whether calls of different threads ran at the same time:
    spans: per thread, a list of (start, end)."""
    events = sorted((t, k, e) for k, ss in enumerate(spans) for s in ss for t, e in
                    ((s[0], 1), (s[1], -1)))
    running = {}
    for _, k, e in events:
        running[k] = running.get(k, 0) + e
        if sum(1 for v in running.values() if v > 0) > 1:
            return True
    return False


# --------------------------------------------------------------------------
# 1. one layer (and one cell) of each kind, called by many threads in inference

NT = 8  # threads
I, H = 32, 64

LAYERS = {
    "lstm": lambda dt: fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=16,
                                     peephole=True, dtype=dt, seed=1),
    "gru": lambda dt: fastlstm.GRU(I, H, num_layers=2, bidirectional=True, dtype=dt, seed=2),
    "lnlstm": lambda dt: fastlstm.LayerNormLSTM(I, H, num_layers=2, bidirectional=True,
                                                dtype=dt, seed=3),
}


def thread_inputs(k, layer, dtype):
    """Thread k's own call: its own T and B, lengths for some, hx for some,
    unbatched input for one."""
    T, B = 6 + 5 * k, 1 + k % 4
    D, L = 2, layer.num_layers
    if k == NT - 1:  # unbatched [T,I]
        return (rand((T, I), dtype, 100 + k),), {}
    x = rand((T, B, I), dtype, 100 + k)
    kw = {}
    if k % 2 == 0:
        lengths = np.maximum(1, T - 3 * np.arange(B)).astype(np.int64)
        kw["lengths"] = np.random.default_rng(k).permutation(lengths)
    if k % 3 == 0:
        h0 = rand((D * L, B, layer.proj_size or H), dtype, 200 + k)
        if isinstance(layer, fastlstm.GRU):
            kw["hx"] = h0
        else:
            kw["hx"] = (h0, rand((D * L, B, H), dtype, 300 + k))
    return (x,), kw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_layer_of_each_cell_shared_by_many_threads_in_inference(dtype):
    """8 threads call one LSTM, one GRU and one LayerNormLSTM (never called
    before: the first calls pack the weights at once) many times each, in
    their own order, with their own shapes; every result equals the one-thread
    result of twin layers."""
    shared = {name: make(dtype).eval() for name, make in LAYERS.items()}
    twins = {name: make(dtype).eval() for name, make in LAYERS.items()}  # same seeds
    for name in LAYERS:
        assert_bitwise(shared[name].state_dict(), twins[name].state_dict(), name)
    calls = {k: {name: thread_inputs(k, twins[name], dtype) for name in LAYERS}
             for k in range(NT)}
    want = {k: {name: copies(twins[name](*a, **kw)) for name, (a, kw) in calls[k].items()}
            for k in range(NT)}
    names = list(LAYERS)
    spans = [[] for _ in range(NT)]

    def worker(k):
        order = names[k % 3:] + names[:k % 3]  # threads start on different layers
        for it in range(20):
            for name in order:
                a, kw = calls[k][name]
                t0 = time.perf_counter()
                out = shared[name](*a, **kw)
                spans[k].append((t0, time.perf_counter()))
                assert_bitwise(out, want[k][name], f"thread {k} {name} call {it}")

    run_together([lambda k=k: worker(k) for k in range(NT)])
    assert overlapped(spans), "no two threads' calls overlapped: the test proved nothing"
    for k in (0, NT - 1):  # the shared layers still give the same afterwards
        for name in names:
            a, kw = calls[k][name]
            assert_bitwise(shared[name](*a, **kw), want[k][name], f"after, {name}")


CELLS = {
    "lstm_cell": lambda: fastlstm.LSTMCell(I, H, peephole=True, seed=4),
    "gru_cell": lambda: fastlstm.GRUCell(I, H, seed=5),
    "lnlstm_cell": lambda: fastlstm.LayerNormLSTMCell(I, H, seed=6),
}


def step_through(cell, xs):
    """Steps a cell over xs [T,B,I] carrying its state; every step's states."""
    two = not isinstance(cell, fastlstm.GRUCell)
    state = None
    out = []
    for x in xs:
        state = cell(x, state) if state is not None else cell(x)
        out.append(tuple(np.array(s) for s in state) if two else (np.array(state),))
    return out


def test_one_cell_of_each_kind_stepped_by_many_threads():
    """8 threads step one LSTMCell, GRUCell and LayerNormLSTMCell each over
    their own sequences (T=1 calls, carried states, the streaming path)."""
    shared = {name: make().eval() for name, make in CELLS.items()}
    twins = {name: make().eval() for name, make in CELLS.items()}
    seqs = {k: rand((20, 1 + k % 5, I), np.float32, 400 + k) for k in range(NT)}
    want = {(k, name): step_through(twins[name], seqs[k])
            for k in range(NT) for name in CELLS}

    def worker(k):
        for it in range(8):
            for name in CELLS:
                got = step_through(shared[name], seqs[k])
                assert_bitwise(got, want[k, name], f"thread {k} {name} pass {it}")

    run_together([lambda k=k: worker(k) for k in range(NT)])


# --------------------------------------------------------------------------
# 2. training: different layers in different threads; two threads on one layer

TRAIN = {  # (factory, dtype): own layers with lengths, hx, dropout, zoneout
    "lstm_proj_dropout": (lambda: fastlstm.LSTM(I, H, num_layers=2, bidirectional=True,
                                                proj_size=16, peephole=True, dropout=0.3,
                                                seed=11), np.float32),
    "lstm_f64_zoneout_clip": (lambda: fastlstm.LSTM(I, H, bidirectional=True, zoneout=0.2,
                                                    cell_clip=2.0, dtype=np.float64,
                                                    seed=12), np.float64),
    "gru_dropout": (lambda: fastlstm.GRU(I, H, num_layers=2, bidirectional=True, dropout=0.25,
                                         seed=13), np.float32),
    "gru_f64": (lambda: fastlstm.GRU(I, H, num_layers=2, dtype=np.float64, seed=14),
                np.float64),
    "lnlstm": (lambda: fastlstm.LayerNormLSTM(I, H, num_layers=2, bidirectional=True,
                                              seed=15), np.float32),
    "lnlstm_zoneout": (lambda: fastlstm.LayerNormLSTM(I, H, bidirectional=True, zoneout=0.3,
                                                      seed=16), np.float32),
}


def train_steps(layer, dtype, seed, steps=3, lr=0.05):
    """A few steps of training: forward (lengths, hx), backward (dy and the
    final states' gradients), an SGD update in place. Every output, mask,
    gradient and the final parameters."""
    T, B = 14, 4
    D, L = (2 if layer.bidirectional else 1), layer.num_layers
    Ho = getattr(layer, "proj_size", 0) or H
    two = not isinstance(layer, fastlstm.GRU)
    lengths = np.array([14, 3, 9, 14], np.int64)
    out = []
    for s in range(steps):
        x = rand((T, B, I), dtype, seed + 10 * s)
        h0 = rand((D * L, B, Ho), dtype, seed + 10 * s + 1)
        hx = (h0, rand((D * L, B, H), dtype, seed + 10 * s + 2)) if two else h0
        layer.zero_grad()
        y, st = layer(x, hx, lengths=lengths)
        dy = rand(y.shape, dtype, seed + 10 * s + 3)
        sts = st if two else (st,)
        dst = [rand(v.shape, dtype, seed + 10 * s + 4 + j) for j, v in enumerate(sts)]
        dx, d0 = layer.backward(dy, *dst)
        out.append(dict(y=np.array(y), states=copies(sts), dx=np.array(dx), d0=copies(d0),
                        grads={k: np.array(v) for k, v in layer.grads.items()},
                        dropout=[np.array(m) for m in layer.dropout_masks],
                        zoneout=[np.array(m) for m in layer.zoneout_masks]))
        for k, v in layer.grads.items():  # seen by the layer: repacked next step
            getattr(layer, k)[...] -= lr * v
    out.append({k: np.array(v) for k, v in layer.state_dict().items()})
    return out


def test_different_layers_trained_by_threads_at_once():
    """Six threads train their own layers (LSTM, GRU, LayerNormLSTM, float32
    and float64, dropout, zoneout, lengths) at once: every output, dropout
    and zoneout mask, gradient and updated parameter equals the one-thread run."""
    names = list(TRAIN)
    want = {n: train_steps(TRAIN[n][0](), TRAIN[n][1], 1000 * j) for j, n in enumerate(names)}
    layers = {n: TRAIN[n][0]() for n in names}
    for n in names:
        assert any(want[n][0]["grads"][k].any() for k in want[n][0]["grads"]), n

    def worker(j, n):
        for rep in range(2):  # the second round starts from the trained weights
            got = train_steps(layers[n], TRAIN[n][1], 1000 * j)
            if rep == 0:
                assert_bitwise(got, want[n], f"{n}")
        return got

    got = run_together([lambda j=j, n=n: worker(j, n) for j, n in enumerate(names)])
    for j, n in enumerate(names):  # round two = one thread continuing from round one
        again = TRAIN[n][0]()
        train_steps(again, TRAIN[n][1], 1000 * j)
        assert_bitwise(got[j], train_steps(again, TRAIN[n][1], 1000 * j), f"{n} round 2")


@pytest.mark.parametrize("cls", [fastlstm.LSTM, fastlstm.GRU, fastlstm.LayerNormLSTM],
                         ids=["lstm", "gru", "lnlstm"])
def test_two_threads_train_one_layer_at_once(cls):
    """Two threads run forward + backward on ONE layer at the same time, in
    no set order: each gets the dx and initial-state gradients of its own
    forward, and the layer's gradients are the two added in one order or the
    other (the backwards take turns adding)."""
    def make():
        return cls(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=21)

    xs = [rand((16, 3, I), np.float64, 500 + k) for k in range(2)]
    dys = [rand((16, 3, 2 * H), np.float64, 600 + k) for k in range(2)]

    def fwd_bwd(layer, k):
        y, _ = layer(xs[k])
        dx, d0 = layer.backward(dys[k])
        return copies((y, dx, d0))

    def grads_after(order):
        m = make()
        outs = {k: fwd_bwd(m, k) for k in order}
        return outs, {k: np.array(v) for k, v in m.grads.items()}

    alone, g01 = grads_after((0, 1))
    _, g10 = grads_after((1, 0))
    shared = make()
    for r in range(4):
        shared.zero_grad()
        got = run_together([lambda k=k: fwd_bwd(shared, k) for k in range(2)])
        for k in range(2):
            assert_bitwise(got[k], alone[k], f"round {r} thread {k}")
        g = {k: np.array(v) for k, v in shared.grads.items()}
        try:
            assert_bitwise(g, g01, "grads")
        except AssertionError:
            assert_bitwise(g, g10, f"round {r}: grads are neither A+B nor B+A")


# --------------------------------------------------------------------------
# 3. fastlstm.set_num_threads changing while other threads compute


def test_set_num_threads_is_process_wide():
    """A count set in one thread is the count of every thread (as documented:
    "The setting is process-wide")."""
    fastlstm.set_num_threads(3)
    seen = run_together([fastlstm.get_num_threads] * 2)
    assert seen == [3, 3]
    run_together([lambda: fastlstm.set_num_threads(2)])
    assert fastlstm.get_num_threads() == 2


def test_set_num_threads_cycled_under_running_calls():
    """One thread cycles fastlstm.set_num_threads through 1, 2, 3, 4 while
    others train their own layers, step a shared cell and run a shared layer
    in inference: no crash or hang, and every result equals the one-thread
    reference (results do not depend on the thread count)."""
    T, B, Ii, Hh = 12, 3, 10, 16
    fastlstm.set_num_threads(1)
    makers = [lambda: fastlstm.LSTM(Ii, Hh, num_layers=2, bidirectional=True, seed=31),
              lambda: fastlstm.GRU(Ii, Hh, bidirectional=True, seed=32),
              lambda: fastlstm.LayerNormLSTM(Ii, Hh, num_layers=2, seed=33)]
    x = rand((T, B, Ii), np.float32, 7)
    lengths = np.array([12, 5, 9], np.int64)

    def train_once(layer, j):
        layer.zero_grad()
        y, st = layer(x, lengths=lengths)
        dx, d0 = layer.backward(rand(y.shape, np.float32, 40 + j))
        return copies((y, st, dx, d0)), {k: np.array(v) for k, v in layer.grads.items()}

    want_train = [train_once(make(), j) for j, make in enumerate(makers)]
    infer = fastlstm.LSTM(Ii, Hh, num_layers=2, bidirectional=True, seed=34).eval()
    want_infer = copies(infer(x, lengths=lengths))
    cell = fastlstm.LSTMCell(Ii, Hh, seed=35).eval()
    want_cell = step_through(cell, x)

    done = threading.Event()
    left = [0]
    lock = threading.Lock()
    seen = [set() for _ in range(len(makers) + 3)]
    counts = (1, 2, 3, 4)
    last = []

    def finished():
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    def work(k, job):
        try:
            for it in range(60):
                seen[k].add(fastlstm.get_num_threads())
                job(it)
        finally:
            finished()

    own = [make() for make in makers]

    def trainer(k):
        work(k, lambda it: assert_bitwise(train_once(own[k], k), want_train[k],
                                          f"trainer {k} step {it}"))

    def inferrer(k):
        work(k, lambda it: assert_bitwise(infer(x, lengths=lengths), want_infer,
                                          f"inference thread {k} call {it}"))

    def stepper(k):
        work(k, lambda it: assert_bitwise(step_through(cell, x), want_cell,
                                          f"cell thread {k} pass {it}"))

    def setter():
        i = 0
        end = time.monotonic() + JOIN_S
        while not done.is_set() and time.monotonic() < end:
            n = counts[i % len(counts)]
            fastlstm.set_num_threads(n)
            last[:] = [n]
            i += 1
            time.sleep(0.0005)
        return i

    workers = [lambda k=k: trainer(k) for k in range(len(makers))]
    workers += [lambda k=k: inferrer(k) for k in range(len(makers), len(makers) + 2)]
    workers += [lambda: stepper(len(makers) + 2)]
    left[0] = len(workers)
    switches = run_together(workers + [setter])[-1]
    assert switches >= len(counts), f"the count changed only {switches} times"
    assert fastlstm.get_num_threads() == last[0]  # the setter's last word, here too
    assert len(set().union(*seen)) >= 2, f"the calls saw one count only: {seen}"
    assert set().union(*seen) <= set(counts)


# --------------------------------------------------------------------------
# 4. fastlstm.torch under DataParallel-style threads

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="needs torch")


def torch_module(cls, seed):
    torch = pytest.importorskip("torch")
    import fastlstm.torch as flt
    torch.manual_seed(seed)
    return getattr(flt, cls)(I, H, num_layers=2, bidirectional=True, dtype=torch.float64)


def shard_run(torch, replica, x, g_y, g_h, backward=True):
    """A replica's forward on its shard (and backward): y, h_n, dx, its
    parameters' gradients. x: a leaf that requires grad."""
    torch.set_grad_enabled(True)  # as parallel_apply's worker does
    y, st = replica(x)
    h = st[0] if isinstance(st, tuple) else st
    if not backward:
        return y, h
    torch.autograd.backward([y, h], [g_y, g_h])
    return shard_grads(replica, x, y, h)


def shard_grads(replica, x, y, h):
    return dict(y=y.detach().clone(), h=h.detach().clone(), dx=x.grad.clone(),
                grads={n: p.grad.clone() for n, p in replica.named_parameters()})


@needs_torch
@pytest.mark.parametrize("backward_in", ["workers", "main"])
@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_torch_data_parallel_style_matches_one_thread(cls, backward_in, torch_one_thread):
    """DataParallel's recipe on the CPU: the module replicated (copy.deepcopy),
    the batch split in shards, each replica's forward run by its own thread
    (parallel_apply), then backward either in each worker thread or once in
    the main thread over the gathered outputs (DataParallel's). Outputs, input
    gradients and every replica's parameter gradients equal the same shards
    run one after the other; gathered, they match the full-batch module."""
    import torch
    module = torch_module(cls, 0)
    T, B, R = 15, 10, 4
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, dtype=torch.float64, generator=gen)
    g_y = torch.randn(T, B, 2 * H, dtype=torch.float64, generator=gen)
    g_h = torch.randn(4, B, H, dtype=torch.float64, generator=gen)
    sizes = [1, 2, 3, 4]  # uneven shards
    xs, gys = x.split(sizes, 1), g_y.split(sizes, 1)
    ghs = g_h.split(sizes, 1)

    def leaves():
        return [s.clone().requires_grad_(True) for s in xs]

    ref_x, ref_reps = leaves(), [copy.deepcopy(module) for _ in range(R)]
    want = [shard_run(torch, ref_reps[r], ref_x[r], gys[r], ghs[r]) for r in range(R)]

    for rnd in range(5):
        reps, xl = [copy.deepcopy(module) for _ in range(R)], leaves()
        if backward_in == "workers":
            got = run_together([lambda r=r: shard_run(torch, reps[r], xl[r], gys[r], ghs[r])
                                for r in range(R)])
        else:
            outs = run_together([lambda r=r: shard_run(torch, reps[r], xl[r], gys[r], ghs[r],
                                                       backward=False) for r in range(R)])
            y = torch.cat([o[0] for o in outs], 1)  # gather, one backward
            h = torch.cat([o[1] for o in outs], 1)
            torch.autograd.backward([y, h], [g_y, g_h])
            got = [shard_grads(reps[r], xl[r], *outs[r]) for r in range(R)]
        for r in range(R):
            assert_bitwise(got[r], want[r], f"round {rnd} replica {r}")

    # DataParallel's result: the gathered outputs and the summed gradients are
    # those of the module on the whole batch (to rounding: a sum in another order)
    full = copy.deepcopy(module)
    xf = x.clone().requires_grad_(True)
    y, st = full(xf)
    h = st[0] if isinstance(st, tuple) else st
    torch.autograd.backward([y, h], [g_y, g_h])
    torch.testing.assert_close(torch.cat([w["y"] for w in want], 1), y.detach())
    torch.testing.assert_close(torch.cat([w["dx"] for w in want], 1), xf.grad)
    for n, p in full.named_parameters():
        torch.testing.assert_close(sum(w["grads"][n] for w in want), p.grad)


@needs_torch
@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_torch_one_module_shared_by_many_threads_in_inference(cls):
    """8 threads run one fastlstm.torch module (eval, no_grad in each thread:
    the cached packed weights, packed at once by the first calls) on their own
    tensors, lengths (PackedSequence) and states; each result equals the
    one-thread one. On torch's default threads: each call runs a team."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence
    shared = torch_module(cls, 3).eval()
    twin = copy.deepcopy(shared)

    def inputs(k):
        gen = torch.Generator().manual_seed(50 + k)
        T, B = 5 + 4 * k, 1 + k % 4
        x = torch.randn(T, B, I, dtype=torch.float64, generator=gen)
        args = [x]
        if k % 2:
            lens = torch.tensor([T - (j * 3) % T for j in range(B)])
            args = [pack_padded_sequence(x, lens, enforce_sorted=False)]
        if k % 3 == 0:
            h0 = torch.randn(4, B, H, dtype=torch.float64, generator=gen)
            args.append((h0, torch.randn(4, B, H, dtype=torch.float64, generator=gen))
                        if cls == "LSTM" else h0)
        return args

    def flat(out):
        y, st = out
        y = y.data if isinstance(y, torch.nn.utils.rnn.PackedSequence) else y
        return [y] + (list(st) if isinstance(st, tuple) else [st])

    args = [inputs(k) for k in range(NT)]
    with torch.no_grad():
        want = [[t.clone() for t in flat(twin(*a))] for a in args]

    def worker(k):
        with torch.no_grad():  # grad mode is per thread
            for it in range(25):
                assert_bitwise(flat(shared(*args[k])), want[k], f"thread {k} call {it}")

    run_together([lambda k=k: worker(k) for k in range(NT)])
