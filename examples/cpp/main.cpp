// One bidirectional LSTM layer through the C++ API: pack the weights once,
// run a training forward and BPTT, and check two gradients against central
// finite differences of the loss L = sum(y * dy) (float64).
#include <fastlstm/lstm.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <vector>

using fastlstm::DirGrads;
using fastlstm::DirWeights;
using fastlstm::ExecConfig;
using fastlstm::LayerDims;
using fastlstm::PackedLayer;

namespace {

struct Problem {
  LayerDims d;
  std::vector<int64_t> lengths;
  std::vector<double> x, h0, c0, dy;
  std::vector<std::vector<double>> w_ih, w_hh, b_ih, b_hh;  // per direction
  ExecConfig cfg;
};

std::vector<DirWeights<double>> weights(const Problem& p) {
  std::vector<DirWeights<double>> w(p.d.D);
  for (int k = 0; k < p.d.D; ++k)
    w[k] = {p.w_ih[k].data(), p.w_hh[k].data(), p.b_ih[k].data(), p.b_hh[k].data()};
  return w;
}

// L = sum(y * dy) of an inference forward on p's current weights.
double loss(const Problem& p) {
  const LayerDims& d = p.d;
  const auto w = weights(p);
  const PackedLayer<double> packed(d, w.data(), p.cfg.isa, false, p.cfg.num_threads);
  std::vector<double> y(d.T * d.B * d.D * d.H), hn(d.D * d.B * d.H), cn(hn.size());
  fastlstm::layer_forward<double>(d, packed, p.x.data(), p.lengths.data(), p.h0.data(),
                                  p.c0.data(), y.data(), hn.data(), cn.data(), nullptr, p.cfg);
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += y[i] * p.dy[i];
  return s;
}

}  // namespace

int main() {
  Problem p;
  p.d.T = 6; p.d.B = 3; p.d.I = 4; p.d.H = 5; p.d.D = 2;
  p.lengths = {6, 2, 4};
  p.cfg.isa = fastlstm::best_isa();
  p.cfg.num_threads = 2;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  auto fill = [&](size_t n) { std::vector<double> v(n); for (auto& e : v) e = u(rng); return v; };
  const LayerDims& d = p.d;
  for (int k = 0; k < d.D; ++k) {
    p.w_ih.push_back(fill(4 * d.H * d.I));
    p.w_hh.push_back(fill(4 * d.H * d.H));
    p.b_ih.push_back(fill(4 * d.H));
    p.b_hh.push_back(fill(4 * d.H));
  }
  p.x = fill(d.T * d.B * d.I);
  p.h0 = fill(d.D * d.B * d.H);
  p.c0 = fill(d.D * d.B * d.H);
  p.dy = fill(d.T * d.B * d.D * d.H);

  // training forward + BPTT on weights packed once (with the backward panels)
  const auto w = weights(p);
  const PackedLayer<double> packed(d, w.data(), p.cfg.isa, true, p.cfg.num_threads);
  const int64_t nws =
      fastlstm::layer_workspace_size(d, p.lengths.data(), p.cfg.isa, sizeof(double));
  std::vector<double> y(d.T * d.B * d.D * d.H), hn(d.D * d.B * d.H), cn(hn.size()), ws(nws);
  fastlstm::layer_forward<double>(d, packed, p.x.data(), p.lengths.data(), p.h0.data(),
                                  p.c0.data(), y.data(), hn.data(), cn.data(), ws.data(), p.cfg);
  std::vector<double> dx(p.x.size()), dh0(hn.size()), dc0(cn.size()), zero(hn.size(), 0.0);
  std::vector<std::vector<double>> gih(d.D, std::vector<double>(4 * d.H * d.I, 0.0)),
      ghh(d.D, std::vector<double>(4 * d.H * d.H, 0.0));
  std::vector<DirGrads<double>> g(d.D);
  for (int k = 0; k < d.D; ++k) g[k] = {gih[k].data(), ghh[k].data()};
  fastlstm::layer_backward<double>(d, packed, p.x.data(), p.lengths.data(), p.c0.data(),
                                   ws.data(), p.dy.data(), zero.data(), zero.data(), dx.data(),
                                   dh0.data(), dc0.data(), g.data(), p.cfg);

  // central differences on one recurrent weight of the reverse direction and one input
  const double eps = 1e-6;
  auto fd = [&](double& v) {
    const double v0 = v;
    v = v0 + eps; const double lp = loss(p);
    v = v0 - eps; const double lm = loss(p);
    v = v0;
    return (lp - lm) / (2 * eps);
  };
  const double fd_w = fd(p.w_hh[1][7]), fd_x = fd(p.x[5]);
  const double err = std::fmax(std::fabs(fd_w - ghh[1][7]), std::fabs(fd_x - dx[5]));
  std::printf("fastlstm %s, isa %s: y[0] = %.6f, dW_hh_reverse[7] = %.8f (fd %.8f), "
              "dx[5] = %.8f (fd %.8f)\n", "C++ API", fastlstm::isa_name(p.cfg.isa), y[0],
              ghh[1][7], fd_w, dx[5], fd_x);
  if (!(err < 1e-7)) {
    std::printf("gradient check failed: max error %.3e\n", err);
    return 1;
  }
  std::printf("gradient check passed (max error %.1e)\n", err);

  // a backend this build does not have is refused before any work
  ExecConfig gpu = p.cfg;
  gpu.backend = fastlstm::Backend::cuda;
  try {
    fastlstm::layer_forward<double>(d, packed, p.x.data(), p.lengths.data(), p.h0.data(),
                                    p.c0.data(), y.data(), hn.data(), cn.data(), nullptr, gpu);
    std::printf("backend cuda was not refused\n");
    return 1;
  } catch (const std::invalid_argument& e) {
    std::printf("refused as expected: %s\n", e.what());
  }
  return 0;
}
