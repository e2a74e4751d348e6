// Internal entry points of the GRU's step kernels and the layer-norm LSTM's
// row kernels, one kernel call at a time, for tests of every ISA path
// (tests/test_kernels_cells.py); not an API. As module.cpp's `_kernel_*`:
// every array is a C-contiguous, aligned NumPy array of the kernel's element
// type, already in the kernel's layout (cpu/kernels.h), of at least the
// elements the kernel reads or writes given the sizes and strides; each size
// is checked before the call, so no call reads or writes out of bounds.
// W comes from _kernel_geometry(isa, dtype).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "core/checked.h"
#include "cpu/kernels.h"
#include "python/kernel_entries.h"

namespace fastlstm {
namespace pyentry {
namespace {

using detail::checked_add;
using detail::checked_mul;

// Kernels<T>::gru.fwd_block[0][training][0] (fwd_block_bf16[0][0] with WT =
// uint16_t: inference only), one unit block (W units), rows j < n:
//   h [n,ldh] h_{t-1} (K columns read)   hself [n,ldh] h_{t-1} of the block's W units
//   w [K,3W] packed W_hh panel, columns [r | z | n] (bfloat16: uint16 [K,NR=4W],
//     each group of 2W in bf16_order, the last W padding, not read as weights)
//   gx [n,ldgx] x W_ih^T + b, interleaved [r, z, x_n][W] (3W columns; the r and z
//     columns are scratch, may hold running sums on return)
//   msum [n,W] scratch (the running h W_hn^T sums between k slices)
//   bhn [W] b_hn                          out [n,ldo] h_t (W columns)
//   gsave [n,ldgs] activated r, z, n, interleaved (3W), msave [n,ldms] W_hn h + b_hn
//     (W): required with training, optional (must stay untouched) without.
template <class T, class WT>
void gru_fwd_block(const std::string& isa, bool training, int64_t n, int64_t K, py::object h,
                   int64_t ldh, py::object hself, py::object w, py::object gx, int64_t ldgx,
                   py::object msum, py::object bhn, py::object out, int64_t ldo,
                   py::object gsave, int64_t ldgs, py::object msave, int64_t ldms,
                   bool split_k) {
  constexpr bool bf16 = std::is_same_v<WT, uint16_t>;
  const auto& k = detail::kernels_for<T>(parse_isa(isa));
  const int64_t W = k.W, GW = 3 * W, WW = bf16 ? k.NR : GW;  // WW: panel row width
  kernel_check(n >= 0, "n: expected >= 0");
  kernel_check(K >= 0, "K: expected >= 0");
  kernel_check(!(bf16 && training), "training: the bfloat16 step is inference only");
  kernel_check(!training || (!gsave.is_none() && !msave.is_none()),
               "gsave, msave: required with training");
  detail::FwdBlockArgs<T> p;
  p.n = n;
  p.K = K;
  p.h = kernel_array<T>(h, "h", kernel_span(n, ldh, K, "h"), false);
  p.ldh = ldh;
  p.hself = kernel_array<T>(hself, "hself", kernel_span(n, ldh, W, "hself"), false);
  const WT* pw = kernel_array<WT>(w, "w", checked_mul(K, WW, "w"), false);
  if constexpr (bf16)
    p.w16 = pw;
  else
    p.w = pw;
  p.gx = kernel_array<T>(gx, "gx", kernel_span(n, ldgx, GW, "gx"), true);
  p.ldgx = ldgx;
  p.msum = kernel_array<T>(msum, "msum", checked_mul(n, W, "msum"), true);
  p.ph = kernel_array<T>(bhn, "bhn", W, false);
  p.out = kernel_array<T>(out, "out", kernel_span(n, ldo, W, "out"), true);
  p.ldo = ldo;
  if (!gsave.is_none()) {
    p.gsave = kernel_array<T>(gsave, "gsave", kernel_span(n, ldgs, GW, "gsave"), true);
    p.ldgs = ldgs;
  }
  if (!msave.is_none()) {
    p.csave = kernel_array<T>(msave, "msave", kernel_span(n, ldms, W, "msave"), true);
    p.ldcs = ldms;
  }
  p.split_k = split_k;
  const auto fn = bf16 ? k.gru.fwd_block_bf16[0][0] : k.gru.fwd_block[0][training][0];
  kernel_check(fn != nullptr, "no such GRU kernel");
  py::gil_scoped_release nogil;
  fn(p);
}

// Kernels<T>::gru.bwd_block[0][0], unit blocks b < nblk, rows j < n (block b is
// 3W further in gates, W further in m, hp, dh and dg):
//   gates [n,ldg] saved activated gates, interleaved [blk][r,z,n][W] (nblk*3W)
//   m [n,ldm] saved W_hn h + b_hn    hp [n,ldhp] h_{t-1}    (nblk*W each)
//   dh [n,lddh] dL/dh_t in, its direct part z*dh_t of dL/dh_{t-1} out
//   dg [n,lddg] the dgates slots [dm, r, z, x_n] (GruStep): slot s of unit u at
//     s*gstride + u (gstride >= nblk*W, lddg >= 3*gstride + nblk*W)
template <class T>
void gru_bwd_block(const std::string& isa, int64_t n, int64_t nblk, py::object gates,
                   int64_t ldg, py::object m, int64_t ldm, py::object hp, int64_t ldhp,
                   py::object dh, int64_t lddh, py::object dg, int64_t lddg, int64_t gstride) {
  const auto& k = detail::kernels_for<T>(parse_isa(isa));
  const int64_t W = k.W;
  kernel_check(n >= 0, "n: expected >= 0");
  kernel_check(nblk >= 0, "nblk: expected >= 0");
  const int64_t bw = checked_mul(nblk, W, "nblk"), b3w = checked_mul(nblk, 3 * W, "nblk");
  kernel_check(gstride >= bw, "gstride: expected >= nblk*W");
  detail::BwdBlockArgs<T> p;
  p.n = n;
  p.nblk = nblk;
  p.gates = kernel_array<T>(gates, "gates", kernel_span(n, ldg, b3w, "gates"), false);
  p.ldg = ldg;
  p.c = kernel_array<T>(m, "m", kernel_span(n, ldm, bw, "m"), false);
  p.ldc = ldm;
  p.cp = kernel_array<T>(hp, "hp", kernel_span(n, ldhp, bw, "hp"), false);
  p.ldcp = ldhp;
  p.dh = kernel_array<T>(dh, "dh", kernel_span(n, lddh, bw, "dh"), true);
  p.lddh = lddh;
  const int64_t dg_row = checked_add(checked_mul(3, gstride, "gstride"), bw, "gstride");
  p.dg = kernel_array<T>(dg, "dg", kernel_span(n, lddg, dg_row, "dg"), true);
  p.lddg = lddg;
  p.gstride = gstride;
  const auto fn = k.gru.bwd_block[0][0];
  py::gil_scoped_release nogil;
  fn(p);
}

// The layer-norm LSTM's row kernels, called once per row j < n (array X's row j
// at X + j*ldX). H >= 1 units, Hp = H rounded up to a multiple of W, GX = 4*Hp;
// "gate-major" rows are [4][Hp], "interleaved" ones [Hp/W][4][W] (kernels.h).
// Inputs' padding units (u >= H) must be zero, as the drivers keep them.
struct LnDims {
  int64_t H, Hp, GX;
};

template <class T>
LnDims ln_dims(const detail::Kernels<T>& k, int64_t n, int64_t H) {
  kernel_check(n >= 0, "n: expected >= 0");
  kernel_check(H >= 1, "H: expected >= 1");
  const int64_t Hp = checked_mul((checked_add(H, k.W - 1, "H")) / k.W, k.W, "H");
  return {H, Hp, checked_mul(4, Hp, "H")};
}

// lnlstm.fwd_row: ln [14*Hp] the packed constants γ_ih, γ_hh, b_ih + b_hh (GX
// each, gate-major), γ_c, β_c (Hp each); gx, r [GX] x W_ih^T and h_{t-1} W_hh^T,
// interleaved; out xn, rn [GX] their layer norms, gate-major; gates [GX]
// activated, interleaved; c [Hp] c_{t-1} in, c_t out; chat [Hp] LN(c_t); h [Hp]
// h_t; rstd [3] of x W_ih^T, h W_hh^T, c_t.
template <class T>
void ln_fwd_row(const std::string& isa, int64_t n, int64_t H, py::object ln, py::object gx,
                int64_t ldgx, py::object r, int64_t ldr, py::object xn, int64_t ldxn,
                py::object rn, int64_t ldrn, py::object gates, int64_t ldgates, py::object c,
                int64_t ldc, py::object chat, int64_t ldchat, py::object h, int64_t ldh,
                py::object rstd, int64_t ldrstd) {
  const auto& k = detail::kernels_for<T>(parse_isa(isa));
  const LnDims d = ln_dims(k, n, H);
  const int64_t GX = d.GX, Hp = d.Hp;
  const T* pln = kernel_array<T>(ln, "ln", checked_mul(14, Hp, "ln"), false);
  const T* pgx = kernel_array<T>(gx, "gx", kernel_span(n, ldgx, GX, "gx"), false);
  const T* pr = kernel_array<T>(r, "r", kernel_span(n, ldr, GX, "r"), false);
  T* pxn = kernel_array<T>(xn, "xn", kernel_span(n, ldxn, GX, "xn"), true);
  T* prn = kernel_array<T>(rn, "rn", kernel_span(n, ldrn, GX, "rn"), true);
  T* pg = kernel_array<T>(gates, "gates", kernel_span(n, ldgates, GX, "gates"), true);
  T* pc = kernel_array<T>(c, "c", kernel_span(n, ldc, Hp, "c"), true);
  T* pch = kernel_array<T>(chat, "chat", kernel_span(n, ldchat, Hp, "chat"), true);
  T* ph = kernel_array<T>(h, "h", kernel_span(n, ldh, Hp, "h"), true);
  T* ps = kernel_array<T>(rstd, "rstd", kernel_span(n, ldrstd, 3, "rstd"), true);
  const auto fn = k.lnlstm.fwd_row;
  py::gil_scoped_release nogil;
  for (int64_t j = 0; j < n; ++j) {
    detail::LnFwdRowArgs<T> a;
    a.H = H;
    a.Hp = Hp;
    a.ln = pln;
    a.gx = pgx + j * ldgx;
    a.r = pr + j * ldr;
    a.xn = pxn + j * ldxn;
    a.rn = prn + j * ldrn;
    a.gates = pg + j * ldgates;
    a.c = pc + j * ldc;
    a.chat = pch + j * ldchat;
    a.h = ph + j * ldh;
    a.rstd = ps + j * ldrstd;
    fn(a);
  }
}

// lnlstm.bwd_row: ln as ln_fwd_row; gates [GX] activated, interleaved; rn [GX]
// LN(h W_hh^T), gate-major; chat [Hp] LN(c_t); cp [Hp] c_{t-1}; rstd [3] (as
// ln_fwd_row leaves them); dh [Hp] dL/dh_t; dc [Hp] dL/dc_t from step t+1 in,
// dL/dc_{t-1} out; out da [GX] dL/d(gate pre-activations), gate-major; dr [GX]
// dL/d(h W_hh^T), gate-major; du [Hp] dL/d(LN(c_t)⊙γ_c + β_c).
template <class T>
void ln_bwd_row(const std::string& isa, int64_t n, int64_t H, py::object ln, py::object gates,
                int64_t ldgates, py::object rn, int64_t ldrn, py::object chat, int64_t ldchat,
                py::object cp, int64_t ldcp, py::object rstd, int64_t ldrstd, py::object dh,
                int64_t lddh, py::object dc, int64_t lddc, py::object da, int64_t ldda,
                py::object dr, int64_t lddr, py::object du, int64_t lddu) {
  const auto& k = detail::kernels_for<T>(parse_isa(isa));
  const LnDims d = ln_dims(k, n, H);
  const int64_t GX = d.GX, Hp = d.Hp;
  const T* pln = kernel_array<T>(ln, "ln", checked_mul(14, Hp, "ln"), false);
  const T* pg = kernel_array<T>(gates, "gates", kernel_span(n, ldgates, GX, "gates"), false);
  const T* prn = kernel_array<T>(rn, "rn", kernel_span(n, ldrn, GX, "rn"), false);
  const T* pch = kernel_array<T>(chat, "chat", kernel_span(n, ldchat, Hp, "chat"), false);
  const T* pcp = kernel_array<T>(cp, "cp", kernel_span(n, ldcp, Hp, "cp"), false);
  const T* ps = kernel_array<T>(rstd, "rstd", kernel_span(n, ldrstd, 3, "rstd"), false);
  const T* pdh = kernel_array<T>(dh, "dh", kernel_span(n, lddh, Hp, "dh"), false);
  T* pdc = kernel_array<T>(dc, "dc", kernel_span(n, lddc, Hp, "dc"), true);
  T* pda = kernel_array<T>(da, "da", kernel_span(n, ldda, GX, "da"), true);
  T* pdr = kernel_array<T>(dr, "dr", kernel_span(n, lddr, GX, "dr"), true);
  T* pdu = kernel_array<T>(du, "du", kernel_span(n, lddu, Hp, "du"), true);
  const auto fn = k.lnlstm.bwd_row;
  py::gil_scoped_release nogil;
  for (int64_t j = 0; j < n; ++j) {
    detail::LnBwdRowArgs<T> a;
    a.H = H;
    a.Hp = Hp;
    a.ln = pln;
    a.gates = pg + j * ldgates;
    a.rn = prn + j * ldrn;
    a.chat = pch + j * ldchat;
    a.cp = pcp + j * ldcp;
    a.rstd = ps + j * ldrstd;
    a.dh = pdh + j * lddh;
    a.dc = pdc + j * lddc;
    a.da = pda + j * ldda;
    a.dr = pdr + j * lddr;
    a.du = pdu + j * lddu;
    fn(a);
  }
}

// lnlstm.norm_backward: row j of out [GX] = dL/dv of nrm = LN(v) (gate-major,
// 4H units) given da [GX] = dL/d(nrm⊙gain), gain [GX], nrm [GX] and rstd[j]
// (rstd [n], one per row, 1/sqrt(var v + eps)).
template <class T>
void ln_norm_backward(const std::string& isa, int64_t n, int64_t H, py::object gain,
                      py::object da, int64_t ldda, py::object nrm, int64_t ldnrm,
                      py::object rstd, py::object out, int64_t ldout) {
  const auto& k = detail::kernels_for<T>(parse_isa(isa));
  const LnDims d = ln_dims(k, n, H);
  const int64_t GX = d.GX, Hp = d.Hp;
  const T* pgain = kernel_array<T>(gain, "gain", GX, false);
  const T* pda = kernel_array<T>(da, "da", kernel_span(n, ldda, GX, "da"), false);
  const T* pn = kernel_array<T>(nrm, "nrm", kernel_span(n, ldnrm, GX, "nrm"), false);
  const T* ps = kernel_array<T>(rstd, "rstd", n, false);
  T* po = kernel_array<T>(out, "out", kernel_span(n, ldout, GX, "out"), true);
  const auto fn = k.lnlstm.norm_backward;
  py::gil_scoped_release nogil;
  for (int64_t j = 0; j < n; ++j) fn(H, Hp, pgain, pda + j * ldda, pn + j * ldnrm, ps[j],
                                     po + j * ldout);
}

template <class T>
void def_typed(py::module_& m, const std::string& s) {
  m.def(("_kernel_gru_fwd_block_" + s).c_str(), &gru_fwd_block<T, T>, py::arg("isa"),
        py::arg("training"), py::arg("n"), py::arg("K"), py::arg("h"), py::arg("ldh"),
        py::arg("hself"), py::arg("w"), py::arg("gx"), py::arg("ldgx"), py::arg("msum"),
        py::arg("bhn"), py::arg("out"), py::arg("ldo"), py::arg("gsave"), py::arg("ldgs"),
        py::arg("msave"), py::arg("ldms"), py::arg("split_k"));
  m.def(("_kernel_gru_bwd_block_" + s).c_str(), &gru_bwd_block<T>, py::arg("isa"),
        py::arg("n"), py::arg("nblk"), py::arg("gates"), py::arg("ldg"), py::arg("m"),
        py::arg("ldm"), py::arg("hp"), py::arg("ldhp"), py::arg("dh"), py::arg("lddh"),
        py::arg("dg"), py::arg("lddg"), py::arg("gstride"));
  m.def(("_kernel_ln_fwd_row_" + s).c_str(), &ln_fwd_row<T>, py::arg("isa"), py::arg("n"),
        py::arg("H"), py::arg("ln"), py::arg("gx"), py::arg("ldgx"), py::arg("r"),
        py::arg("ldr"), py::arg("xn"), py::arg("ldxn"), py::arg("rn"), py::arg("ldrn"),
        py::arg("gates"), py::arg("ldgates"), py::arg("c"), py::arg("ldc"), py::arg("chat"),
        py::arg("ldchat"), py::arg("h"), py::arg("ldh"), py::arg("rstd"), py::arg("ldrstd"));
  m.def(("_kernel_ln_bwd_row_" + s).c_str(), &ln_bwd_row<T>, py::arg("isa"), py::arg("n"),
        py::arg("H"), py::arg("ln"), py::arg("gates"), py::arg("ldgates"), py::arg("rn"),
        py::arg("ldrn"), py::arg("chat"), py::arg("ldchat"), py::arg("cp"), py::arg("ldcp"),
        py::arg("rstd"), py::arg("ldrstd"), py::arg("dh"), py::arg("lddh"), py::arg("dc"),
        py::arg("lddc"), py::arg("da"), py::arg("ldda"), py::arg("dr"), py::arg("lddr"),
        py::arg("du"), py::arg("lddu"));
  m.def(("_kernel_ln_norm_backward_" + s).c_str(), &ln_norm_backward<T>, py::arg("isa"),
        py::arg("n"), py::arg("H"), py::arg("gain"), py::arg("da"), py::arg("ldda"),
        py::arg("nrm"), py::arg("ldnrm"), py::arg("rstd"), py::arg("out"), py::arg("ldout"));
}

}  // namespace

void def_kernel_cell_entries(py::module_& m) {
  def_typed<float>(m, "f32");
  def_typed<double>(m, "f64");
  m.def("_kernel_gru_fwd_block_bf16", &gru_fwd_block<float, uint16_t>, py::arg("isa"),
        py::arg("training"), py::arg("n"), py::arg("K"), py::arg("h"), py::arg("ldh"),
        py::arg("hself"), py::arg("w"), py::arg("gx"), py::arg("ldgx"), py::arg("msum"),
        py::arg("bhn"), py::arg("out"), py::arg("ldo"), py::arg("gsave"), py::arg("ldgs"),
        py::arg("msave"), py::arg("ldms"), py::arg("split_k"));
}

}  // namespace pyentry
}  // namespace fastlstm
