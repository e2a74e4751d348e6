"""The side-by-side bench tool's helpers (``python -m fastlstm bench``): % of the
GEMM peak, the peak line, the cold measurement, the table layout and --plot
without matplotlib. Nothing here asserts on a timing."""
import json
import sys
import types

import numpy as np
import pytest

bench = pytest.importorskip("fastlstm.bench")


def result(impl, ms=None, cold=None, threads=1, mode="forward", shape="stream", flops=1e9,
           peak=None, status="ok"):
    r = bench.Result(shape, threads, mode, impl, flops, status=status)
    r.samples_ms = [] if ms is None else [ms]
    r.cold_samples_ms = [] if cold is None else [cold]
    r.peak_gflops = peak
    return r


# --------------------------------------------------------------------------- % peak


def test_pct_peak():
    assert bench.pct_peak(50.0, 200.0) == pytest.approx(25.0)
    assert bench.pct_peak(300.0, 200.0) == pytest.approx(150.0)
    for gflops, peak in ((None, 200.0), (50.0, None), (50.0, 0.0), (50.0, float("nan"))):
        assert bench.pct_peak(gflops, peak) is None


@pytest.mark.parametrize("pct,text", [(25.0, "25%"), (4.83, "4.8%"), (0.04, "0.0%"),
                                      (9.96, "10%"), (123.4, "123%"), (None, "-"),
                                      (float("nan"), "-")])
def test_fmt_pct(pct, text):
    assert bench.fmt_pct(pct) == text


def test_result_pct_peak_and_json():
    r = result("fastlstm", ms=2.0, cold=3.0, flops=1e9, peak=1000.0)  # 500 GFLOP/s
    assert r.gflops == pytest.approx(500.0)
    assert r.pct_peak == pytest.approx(50.0)
    doc = json.loads(json.dumps(r.to_json()))
    assert doc["pct_peak"] == pytest.approx(50.0)
    assert doc["cold_median_ms"] == pytest.approx(3.0)
    assert doc["peak_gflops"] == pytest.approx(1000.0)


# --------------------------------------------------------------------------- peak


@pytest.mark.parametrize("torch,tpc,expected", [
    (True, True, ["torch.mm", "numpy matmul"]),
    (True, False, ["torch.mm"]),  # numpy's threads cannot be limited: torch alone
    (False, True, ["numpy matmul"]),
    (False, False, ["numpy matmul"]),  # noted as the BLAS default thread count
])
def test_peak_sources(torch, tpc, expected):
    assert bench.peak_sources(torch, tpc) == expected


def test_peak_line():
    peaks = [bench.Peak(1, gflops=85.24, source="torch.mm"),
             bench.Peak(2, gflops=160.0, source="torch.mm")]
    assert bench.peak_line(peaks) == ("peak fp32 GEMM: 1 thread 85.2 GFLOP/s, "
                                      "2 threads 160.0 GFLOP/s (torch.mm 2048^3)")
    mixed = [bench.Peak(1, gflops=85.0, source="numpy matmul"),
             bench.Peak(2, gflops=160.0, source="torch.mm")]
    assert bench.peak_line(mixed) == ("peak fp32 GEMM: 1 thread 85.0 GFLOP/s (numpy matmul), "
                                      "2 threads 160.0 GFLOP/s (torch.mm) (2048^3)")
    failed = [bench.Peak(2)]
    assert bench.peak_line(failed) == "peak fp32 GEMM: 2 threads not measured (2048^3)"
    assert bench.peak_line([]) == "peak fp32 GEMM: not measured"


def test_attach_peaks():
    rs = [result("fastlstm", ms=1.0, threads=1), result("torch", ms=1.0, threads=2),
          result("fastlstm", ms=1.0, threads=4)]
    bench.attach_peaks(rs, [bench.Peak(1, gflops=10.0), bench.Peak(2, gflops=20.0)])
    assert [r.peak_gflops for r in rs] == [10.0, 20.0, None]


def test_gemm_peak_small():
    """The peak machinery on a tiny product (the value itself is not checked)."""
    peak = bench.gemm_peak(1, n=32, budget_s=0.0)
    assert peak.threads == 1 and peak.n == 32
    assert peak.gflops is not None and peak.gflops > 0
    assert peak.source in peak.by_source
    ran = peak.by_source[peak.source]
    assert len(ran["samples_ms"]) >= bench.PEAK_MIN_REPS
    assert peak.gflops == max(v["gflops"] for v in peak.by_source.values() if "gflops" in v)


def test_peak_notes():
    peaks = [bench.Peak(1, gflops=5.0, source="numpy matmul", blas_default_threads=True,
                        by_source={"numpy matmul": {"gflops": 5.0},
                                   "torch.mm": {"error": "error: RuntimeError: boom"}})]
    text = "\n".join(bench.notes([], peaks=peaks))
    assert "BLAS's default thread count" in text
    assert "peak t=1: torch.mm: error: RuntimeError: boom" in text


# --------------------------------------------------------------------------- cold


def test_measure_runs_setup_before_each_timed_call():
    log = []
    timing = bench.Timing(min_time=0.0, min_reps=3, warmup_time=0.0, max_warmup=1)
    samples = bench.measure(lambda: log.append("call"), timing,
                            setup=lambda: log.append("setup"))
    assert len(samples) == 3
    assert log == ["call"] + ["setup", "call"] * 3  # the warm-up call has no setup


def test_cold_timing():
    cold = bench.Timing().cold()
    assert (cold.min_reps, cold.max_warmup) == (3, 0)
    assert cold.min_time <= bench.Timing().min_time
    assert bench.Timing(min_reps=1, min_time=0.0).cold().min_reps == 1
    assert bench.Timing(min_reps=1, min_time=0.0).cold().min_time == 0.0


class FakeLayer:
    def __init__(self):
        self.log = []

    def params_changed(self):
        self.log.append("params_changed")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_invalidate_marks_params_changed(cell):
    layer = FakeLayer()
    impl = bench.FastLSTM(types.SimpleNamespace(model=layer, cell=cell,
                                                shape=bench.SHAPES["stream"]))
    impl.invalidate()
    assert layer.log == ["params_changed"]
    assert impl.invalidation == f"{cell}.params_changed()"


TINY = bench.Shape("tiny", 5, 3, 4, 6)


def test_invalidate_keeps_weights_and_output():
    case = bench.make_case(TINY)
    impl = bench.FastLSTM(case)
    y0 = impl.output().copy()
    before = case.model.state_dict()
    version = getattr(case.model, "params_version", None)
    impl.invalidate()
    if version is not None:  # the layer counts weight changes: this must be one
        assert case.model.params_version > version
    after = case.model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(impl.output(), y0)


class CountingFastLSTM(bench.FastLSTM):
    """FastLSTM that logs its calls and invalidations."""

    def __init__(self, case):
        super().__init__(case)
        self.log = []

    def invalidate(self):
        self.log.append("invalidate")
        super().invalidate()

    def prepare(self, mode, threads):
        fn = super().prepare(mode, threads)
        return lambda: (self.log.append("call"), fn())


@pytest.mark.parametrize("mode", bench.MODES)
def test_run_one_measures_cold_for_fastlstm_only(mode):
    case = bench.make_case(TINY)
    timing = bench.Timing(min_time=0.0, min_reps=2, warmup_time=0.0, max_warmup=1,
                          cold_min_reps=2, cold_min_time=0.0)
    impl = CountingFastLSTM(case)
    r = bench.run_one(impl, case, mode, 1, timing)
    assert r.status == "ok" and len(r.samples_ms) == 2
    assert len(r.cold_samples_ms) == 2 and r.cold_invalidation
    # warm-up + 2 warm calls, then each cold call right after an invalidation
    assert impl.log == ["call"] * 3 + ["invalidate", "call"] * 2
    peer = bench.run_one(bench.Unavailable("torch", "not installed"), case, mode, 1, timing)
    assert peer.cold_samples_ms == [] and peer.cold_invalidation is None


# --------------------------------------------------------------------------- table, notes


def test_table_columns():
    rs = [result("fastlstm", ms=2.0, cold=3.0, peak=1000.0),
          result("torch", ms=4.0, peak=1000.0),
          result("onnxruntime", status="not installed"),
          result("numpy-ref", ms=1000.0)]
    lines = bench.table(rs).splitlines()
    head1, head2, rule, row = lines[:4]
    assert head2.split()[:7] == ["shape", "t", "mode", "ms", "GFLOP/s", "%pk", "cold"]
    assert len(head1) == len(head2) == len(rule) == len(row)
    assert row.split()[:8] == ["stream", "1", "forward", "2.000", "500.0", "50%", "3.000",
                               "4.000"]
    assert "2.00x" in row and "not installed" in row
    assert any(line.startswith("%pk = ") for line in lines)
    assert any(line.startswith("cold = ") for line in lines)


def test_table_without_peak_or_cold():
    row = bench.table([result("fastlstm", ms=2.0)]).splitlines()[3]
    assert row.split()[3:7] == ["2.000", "500.0", "-", "-"]


def test_cold_notes():
    fast = result("fastlstm", ms=2.0, cold=3.0)
    fast.cold_invalidation = "lstm.params_changed()"
    text = "\n".join(bench.notes([fast, result("torch", ms=4.0),
                                  result("onnxruntime", ms=1.0)]))
    assert "lstm.params_changed()" in text
    assert "torch.nn.LSTM reorders its weights inside every call" in text
    assert "session initializers" in text
    assert "torch" not in "\n".join(bench.notes([fast]))


# --------------------------------------------------------------------------- plot


def test_speedups():
    rs = [result("fastlstm", ms=2.0), result("torch", ms=5.0),
          result("onnxruntime", status="n/a"), result("numpy-ref", ms=1.0),
          result("fastlstm", ms=1.0, mode="train"), result("torch", ms=3.0, mode="train")]
    s = bench.speedups(rs)
    assert s["forward"][("stream", 1)] == pytest.approx(
        {"torch": 2.5, "onnxruntime": None, "numpy-ref": 0.5})
    assert s["train"][("stream", 1)]["torch"] == pytest.approx(3.0)


def test_plot_without_matplotlib(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    path = tmp_path / "speedups.png"
    assert bench.plot(str(path), [result("fastlstm", ms=2.0), result("torch", ms=4.0)]) is False
    assert capsys.readouterr().err == bench.NO_MATPLOTLIB + "\n"
    assert "`bench` extra" in bench.NO_MATPLOTLIB
    assert not path.exists()


def test_plot_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "speedups.png"
    rs = [result("fastlstm", ms=2.0), result("torch", ms=5.0),
          result("fastlstm", ms=2.0, threads=2), result("torch", ms=1.0, threads=2),
          result("fastlstm", ms=1.0, mode="train"), result("torch", status="not installed",
                                                           mode="train")]
    assert bench.plot(str(path), rs) is True
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_plot_without_matplotlib_exits_0(monkeypatch, capsys, tmp_path):
    """--plot without matplotlib: one line on stderr, exit code 0; the JSON keeps peak and cold."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(bench, "gemm_peak", lambda n: bench.Peak(n, gflops=100.0, source="fake"))
    monkeypatch.setattr(bench, "SHAPES", {"tiny": TINY})
    monkeypatch.setattr(bench, "PEERS_BY_NAME", {
        name: (cls, ("fastlstm_no_such_module",)) for name, (cls, _) in
        bench.PEERS_BY_NAME.items()})  # every peer "not installed": fastlstm alone
    png, js = tmp_path / "p.png", tmp_path / "r.json"
    code = bench.main(["--shapes", "tiny", "--threads", "1", "--min-reps", "1", "--min-time",
                       "0", "--plot", str(png), "--json", str(js)])
    assert code == 0
    captured = capsys.readouterr()
    assert ("matplotlib is not installed: --plot skipped (pip install matplotlib; "
            "fastlstm's `bench` extra has it)\n") in captured.err
    assert not png.exists()
    assert "peak fp32 GEMM: 1 thread 100.0 GFLOP/s (fake 2048^3)" in captured.out
    doc = json.loads(js.read_text())
    assert doc["peak"]["by_threads"][0]["gflops"] == 100.0
    fast = [r for r in doc["results"] if r["impl"] == "fastlstm"]
    assert fast and all(r["cold_median_ms"] is not None and r["pct_peak"] is not None
                        for r in fast)


def test_best_peaks_keeps_the_higher_measurement_per_thread_count():
    first = [bench.Peak(1, gflops=70.0, source="torch.mm"), bench.Peak(2, gflops=None)]
    second = [bench.Peak(1, gflops=65.0, source="torch.mm"),
              bench.Peak(2, gflops=120.0, source="torch.mm")]
    best = bench.best_peaks(first, second)
    assert [p.gflops for p in best] == [70.0, 120.0]
    assert [p.threads for p in best] == [1, 2]


# --------------------------------------------------------------------------- --cell


TINY_VARLEN = bench.Shape("tiny_varlen", 7, 4, 5, 6, varlen=True)
TINY_BI2 = bench.Shape("tiny_bi2", 5, 3, 4, 6, layers=2, bidirectional=True)
TINY_PROJ = bench.Shape("tiny_proj", 5, 3, 4, 8, proj=3)
FAST = dict(min_time=0.0, min_reps=2, warmup_time=0.0, max_warmup=1, cold_min_reps=1,
            cold_min_time=0.0)


def test_gru_flops_are_three_quarters_of_the_lstms():
    for shape in (TINY, TINY_BI2, bench.SHAPES["deepbench"]):
        lstm, gru = (bench.forward_flops(shape, cell=c) for c in ("lstm", "gru"))
        assert gru == pytest.approx(0.75 * lstm)
    s = bench.SHAPES["mid"]  # 2 * T*B * 3H * (I + H)
    assert bench.forward_flops(s, cell="gru") == 2 * 100 * 16 * 3 * 512 * (512 + 512)
    assert bench.mode_flops(s, "train", cell="gru") == 3 * bench.forward_flops(s, cell="gru")
    assert bench.forward_flops(s) == bench.forward_flops(s, cell="lstm")  # the default


def test_shape_supports_cell():
    assert all(s.supports("lstm") for s in bench.SHAPES.values())
    assert [n for n, s in bench.SHAPES.items() if not s.supports("gru")] == ["proj"]


@pytest.mark.parametrize("shape", [TINY, TINY_VARLEN, TINY_BI2], ids=lambda s: s.name)
def test_make_case_gru(shape):
    case = bench.make_case(shape, "gru")
    assert isinstance(case.model, bench.fastlstm.GRU) and case.cell == "gru"
    assert case.state["weight_hh_l0"].shape == (3 * shape.H, shape.H)
    assert case.state["weight_ih_l0"].dtype == np.float32
    assert case.dy.shape == (shape.T, shape.B, shape.D * shape.H)
    if shape.varlen:
        assert case.lengths is not None
        assert not case.dy[np.arange(shape.T)[:, None] >= case.lengths[None, :]].any()


def test_make_case_gru_refuses_projection():
    with pytest.raises(ValueError, match="no projection"):
        bench.make_case(TINY_PROJ, "gru")
    assert isinstance(bench.make_case(TINY_PROJ).model, bench.fastlstm.LSTM)


@pytest.mark.parametrize("cell", ["lstm", "gru", "lnlstm"])
@pytest.mark.parametrize("shape", [TINY, TINY_VARLEN, TINY_BI2], ids=lambda s: s.name)
def test_peers_compute_the_same_forward(cell, shape):
    """Every installed peer loads the case's weights and computes fastlstm's y
    (the check the bench makes before comparing times, here to float32 accuracy)."""
    case = bench.make_case(shape, cell)
    impls = bench.make_impls(case)
    assert [i.name for i in impls] == list(bench.IMPLS)
    y0 = impls[0].output()
    assert y0.shape == case.dy.shape
    for impl in impls[1:]:
        if cell == "lnlstm" and impl.name == "onnxruntime":  # ONNX has no such op
            assert isinstance(impl, bench.Unavailable) and impl.status == "n/a"
            continue
        if isinstance(impl, bench.Unavailable):
            assert impl.status == "not installed", impl.status  # an error is a failure
            continue
        y = impl.output()
        assert y.shape == y0.shape, impl.name
        assert bench.max_abs_diff(y, y0) < 1e-5, impl.name


def test_gru_peers_are_the_gru_ops():
    """torch.nn.GRU, an ONNX GRU node with linear_before_reset=1 and reference_gru."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    case = bench.make_case(TINY_VARLEN, "gru")
    by_name = {i.name: i for i in bench.make_impls(case)}
    assert isinstance(by_name["torch"].module, torch.nn.GRU)
    nodes = onnx.load_from_string(by_name["onnxruntime"].model).graph.node
    grus = [n for n in nodes if n.op_type == "GRU"]
    assert len(grus) == 1 and not any(n.op_type == "LSTM" for n in nodes)
    attrs = {a.name: a for a in grus[0].attribute}
    assert attrs["linear_before_reset"].i == 1
    assert grus[0].input[4] == "sequence_lens"  # X, W, R, B, sequence_lens
    assert by_name["numpy-ref"].forward.__module__ == "fastlstm.reference_gru"


def test_run_shape_gru_medians_ratios_and_output_check():
    """A whole GRU shape: every implementation and mode measured, the forward
    outputs checked against fastlstm's, ratios formed."""
    pytest.importorskip("torch")
    progress = bench.Progress(2 * len(bench.IMPLS))
    rs = bench.run_shape(TINY_VARLEN, [1], list(bench.MODES), bench.Timing(**FAST), progress,
                         "gru")
    assert [(r.mode, r.impl) for r in rs] == [(m, i) for m in bench.MODES for i in bench.IMPLS]
    assert all(r.cell == "gru" for r in rs)
    by = {(r.mode, r.impl): r for r in rs}
    flops = bench.mode_flops(TINY_VARLEN, "forward", bench.make_lengths(TINY_VARLEN), cell="gru")
    assert by["forward", "fastlstm"].flops == flops
    assert by["train", "fastlstm"].flops == 3 * flops
    for (mode, impl), r in by.items():
        if impl == "onnxruntime" and mode == "train":
            assert r.status == "-"
        elif r.status != "not installed":
            assert r.status == "ok" and len(r.samples_ms) >= 2, (mode, impl, r.status)
            assert r.median_ms > 0
    assert by["forward", "fastlstm"].cold_samples_ms and by["train", "fastlstm"].cold_samples_ms
    for impl in bench.PEERS:
        r = by["forward", impl]
        if r.samples_ms:
            assert r.max_abs_diff is not None and r.max_abs_diff < 1e-5, impl
    s = bench.speedups(rs)
    assert s["forward"][("tiny_varlen", 1)]["torch"] == pytest.approx(
        by["forward", "torch"].median_ms / by["forward", "fastlstm"].median_ms)
    assert s["train"][("tiny_varlen", 1)]["onnxruntime"] is None


def _main(monkeypatch, capsys, argv, shapes):
    monkeypatch.setattr(bench, "gemm_peak", lambda n: bench.Peak(n, gflops=100.0, source="fake"))
    monkeypatch.setattr(bench, "SHAPES", {s.name: s for s in shapes})
    code = bench.main(argv + ["--threads", "1", "--min-reps", "1", "--min-time", "0"])
    return code, capsys.readouterr()


def test_main_cell_gru(monkeypatch, capsys, tmp_path):
    """--cell gru: the default shape list drops the projection (noted), every row is
    the GRU's, the JSON names the cell and holds medians and ratios."""
    pytest.importorskip("torch")
    js = tmp_path / "r.json"
    code, out = _main(monkeypatch, capsys, ["--cell", "gru", "--json", str(js)],
                      [TINY, TINY_PROJ])
    assert code == 0
    assert "cell gru: fastlstm.GRU" in out.out.splitlines()[0]
    assert "note: tiny_proj: skipped, the gru has no projection" in out.out
    assert "tiny_proj" not in out.err.replace("tiny_proj: skipped", "")
    assert "torch.nn.GRU" in out.out and "gru.params_changed()" in out.out
    doc = json.loads(js.read_text())
    assert doc["settings"]["cell"] == "gru"
    assert {r["shape"] for r in doc["results"]} == {"tiny"}
    assert all(r["cell"] == "gru" for r in doc["results"])
    assert doc["results"][0]["flops"] == bench.forward_flops(TINY, cell="gru")
    fast = {r["mode"]: r for r in doc["results"] if r["impl"] == "fastlstm"}
    torch_rows = {r["mode"]: r for r in doc["results"] if r["impl"] == "torch"}
    assert set(fast) == set(torch_rows) == set(bench.MODES)
    for mode in bench.MODES:
        assert fast[mode]["median_ms"] > 0 and torch_rows[mode]["median_ms"] > 0
    assert torch_rows["forward"]["max_abs_diff"] < 1e-5
    row = next(line for line in out.out.splitlines() if line.startswith("tiny ") and "forward"
               in line)
    assert row.split()[9].endswith("x")  # torch: ms, GFLOP/s, ratio


def test_main_default_cell_is_lstm(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(bench, "PEERS_BY_NAME", {
        name: (cls, ("fastlstm_no_such_module",)) for name, (cls, _) in
        bench.PEERS_BY_NAME.items()})
    js = tmp_path / "r.json"
    code, out = _main(monkeypatch, capsys, ["--json", str(js)], [TINY, TINY_PROJ])
    assert code == 0
    assert " | cell " not in out.out and "skipped" not in out.out
    doc = json.loads(js.read_text())
    assert doc["settings"]["cell"] == "lstm"
    assert {r["shape"] for r in doc["results"]} == {"tiny", "tiny_proj"}
    assert all(r["cell"] == "lstm" for r in doc["results"])
    assert "lstm.params_changed()" in out.out


def test_cell_lnlstm_times_the_layer_against_plain_torch_ops():
    args = bench.parse_args(["--cell", "lnlstm"])
    assert args.shapes == [n for n in bench.SHAPES if n not in ("proj", "cell")]
    case = bench.make_case(TINY_VARLEN, "lnlstm")
    assert isinstance(case.model, bench.fastlstm.LayerNormLSTM)
    pytest.importorskip("torch")
    t = bench.Torch(case)
    assert type(t.module).__name__ == "TorchLayerNormLSTM"
    step = t.prepare("train", 1)
    step()  # the plain torch module trains, and its gradients reach every parameter
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in t.module.parameters())


def test_cell_gru_refuses_an_explicit_projection_shape(capsys):
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["--cell", "gru", "--shapes", "mid,proj"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--cell gru: the gru has no projection: drop proj from --shapes" in err
    args = bench.parse_args(["--cell", "gru"])
    assert args.shapes == [n for n in bench.SHAPES if n != "proj"]
    assert args.skipped == ["proj: skipped, the gru has no projection"]
    args = bench.parse_args([])
    assert args.cell == "lstm" and args.shapes == list(bench.SHAPES) and args.skipped == []
    with pytest.raises(SystemExit):
        bench.parse_args(["--cell", "rnn"])


def test_load_option_starts_and_stops_busy_processes(monkeypatch, capsys, tmp_path):
    """--load N: N busy processes run while the shapes are timed (seen from
    inside the timed code), are gone afterwards, and the JSON and notes say so."""
    import subprocess
    with pytest.raises(SystemExit):
        bench.parse_args(["--load", "-1"])
    seen, started = [], []
    real_popen = subprocess.Popen

    def popen(*a, **k):
        p = real_popen(*a, **k)
        started.append(p)
        return p

    monkeypatch.setattr(subprocess, "Popen", popen)
    real_run_shape = bench.run_shape

    def run_shape(*a, **k):
        seen.append([p.poll() is None for p in started])
        return real_run_shape(*a, **k)

    monkeypatch.setattr(bench, "run_shape", run_shape)
    monkeypatch.setattr(bench, "PEERS_BY_NAME", {
        name: (cls, ("fastlstm_no_such_module",)) for name, (cls, _) in
        bench.PEERS_BY_NAME.items()})
    js = tmp_path / "r.json"
    code, out = _main(monkeypatch, capsys, ["--load", "2", "--json", str(js)], [TINY])
    assert code == 0
    assert seen == [[True, True]]  # both alive while the shape ran
    assert len(started) == 2 and all(p.poll() is not None for p in started)
    assert "note: --load 2:" in out.out
    assert json.loads(js.read_text())["settings"]["load"] == 2


TINY_STEP = bench.Shape("tiny_step", 5, 2, 3, 4, step=True)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_shape_times_the_one_step_cells(cell):
    """The streaming shape: fastlstm.LSTMCell / GRUCell against torch.nn's cell,
    one call a step with the state carried, forward only; the layer's weights
    in both, so y is the layer's y; ONNX Runtime and the reference are n/a."""
    case = bench.make_case(TINY_STEP, cell)
    impls = bench.make_impls(case)
    fl = impls[0]
    assert type(fl.lstm).__name__ == bench.CELLS[cell].step_cell
    y0 = fl.output()
    layer = case.model
    layer.eval()
    np.testing.assert_allclose(y0, layer(case.x)[0], rtol=1e-5, atol=1e-6)
    last = fl.prepare("forward", 1)()
    np.testing.assert_array_equal(last[0] if cell == "lstm" else last, y0[-1])
    for impl in impls[1:]:
        if impl.name in ("onnxruntime", "numpy-ref"):
            assert isinstance(impl, bench.Unavailable) and impl.status == "n/a", impl.name
        elif not isinstance(impl, bench.Unavailable):
            assert type(impl.module).__name__ == bench.CELLS[cell].step_cell
            assert bench.max_abs_diff(impl.output(), y0) < 1e-5
    assert TINY_STEP.modes == ("forward",) and not TINY_STEP.supports("lnlstm")
    rs = bench.run_shape(TINY_STEP, [1], list(bench.MODES), bench.Timing(**FAST),
                         bench.Progress(len(bench.IMPLS)), cell)
    assert {r.mode for r in rs} == {"forward"}
    assert rs[0].status == "ok" and rs[0].flops == bench.mode_flops(TINY_STEP, "forward",
                                                                     cell=cell)
