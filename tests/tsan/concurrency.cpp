// Concurrency under ThreadSanitizer (.ci/tsan): many threads use the C ABI
// at once, each call running its own OpenMP team inside.
//   - 6 threads run inference on ONE packed layer (shared weights);
//   - 4 threads train their OWN layers (pack, forward, backward);
//   - 2 threads call with thread counts cycling 1..4 (the adaptive back-off
//     state is process-wide).
// Every result must equal, bitwise, the same call made alone beforehand; a
// data race is a TSan report (halt_on_error). Exit 0 on success. `--race`
// runs a deliberate race instead, which TSan must report.
#include <fastlstm/fastlstm_c.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr int64_t T = 12, B = 3, I = 10, H = 16;
constexpr int kRounds = 20;

struct Layer {
  std::vector<float> w_ih, w_hh, b_ih, b_hh;  // [4H,I], [4H,H], [4H], [4H]
  explicit Layer(unsigned seed) : w_ih(4 * H * I), w_hh(4 * H * H), b_ih(4 * H), b_hh(4 * H) {
    for (auto* v : {&w_ih, &w_hh, &b_ih, &b_hh})
      for (float& x : *v) x = ((seed = seed * 1103515245u + 12345u) >> 9 & 0xffff) / 65536.f - .5f;
  }
  fastlstm_weights_f32 weights() const {
    return {w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data(), nullptr, nullptr};
  }
};

const fastlstm_dims kDims = {T, B, I, H, 0, 1, 0, FASTLSTM_CELL_LSTM};

std::vector<float> input(unsigned seed, int64_t n) {
  std::vector<float> v(n);
  for (float& x : v) x = ((seed = seed * 69069u + 1u) >> 9 & 0xffff) / 32768.f - 1.f;
  return v;
}

bool ok(fastlstm_status s, const char* what) {
  if (s == FASTLSTM_OK) return true;
  std::fprintf(stderr, "%s: status %d: %s\n", what, int(s), fastlstm_last_error());
  return false;
}

// y [T,B,H] of an inference forward on packed weights p.
std::vector<float> infer(const fastlstm_packed* p, const std::vector<float>& x, int threads) {
  std::vector<float> y(T * B * H), h0(B * H), hn(B * H), cn(B * H);
  if (!ok(fastlstm_forward_f32(&kDims, p, x.data(), nullptr, h0.data(), h0.data(), y.data(),
                               hn.data(), cn.data(), nullptr, threads), "forward"))
    y.clear();
  return y;
}

// dx [T,B,I] then dW_hh [4H,H] of a training step of its own layer.
std::vector<float> train(const Layer& l, const std::vector<float>& x, int threads) {
  fastlstm_weights_f32 w = l.weights();
  fastlstm_packed* p = nullptr;
  if (!ok(fastlstm_pack_f32(&kDims, &w, FASTLSTM_ISA_BEST, 1, threads, &p), "pack")) return {};
  int64_t nws = 0;
  fastlstm_workspace_size(&kDims, nullptr, fastlstm_best_isa(), 4, &nws);
  std::vector<float> ws(nws), y(T * B * H), zero(B * H), hn(B * H), cn(B * H), dx(T * B * I);
  std::vector<float> dh0(B * H), dc0(B * H), g_ih(4 * H * I), g_hh(4 * H * H), g_b(4 * H),
      g_b2(4 * H);
  fastlstm_grads_f32 g = {g_ih.data(), g_hh.data(), g_b.data(), g_b2.data(), nullptr, nullptr};
  const std::vector<float>& dy = x;  // any fixed values of the right size will do
  std::vector<float> dyv(dy.begin(), dy.begin() + T * B * H);
  bool good = ok(fastlstm_forward_f32(&kDims, p, x.data(), nullptr, zero.data(), zero.data(),
                                      y.data(), hn.data(), cn.data(), ws.data(), threads),
                 "train forward") &&
              ok(fastlstm_backward_f32(&kDims, p, x.data(), nullptr, zero.data(), ws.data(),
                                       dyv.data(), zero.data(), zero.data(), dx.data(), dh0.data(),
                                       dc0.data(), &g, threads),
                 "backward");
  fastlstm_packed_free(p);
  if (!good) return {};
  dx.insert(dx.end(), g_hh.begin(), g_hh.end());
  return dx;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--race") == 0) {  // proves TSan is on: must be reported
    int counter = 0;
    std::thread a([&] { for (int i = 0; i < 1000; ++i) ++counter; });
    std::thread b([&] { for (int i = 0; i < 1000; ++i) ++counter; });
    a.join();
    b.join();
    std::printf("racy counter: %d\n", counter);
    return 0;
  }
  const Layer shared(1);
  fastlstm_weights_f32 w = shared.weights();
  fastlstm_packed* p = nullptr;
  if (!ok(fastlstm_pack_f32(&kDims, &w, FASTLSTM_ISA_BEST, 0, 2, &p), "pack shared")) return 1;

  constexpr int kInfer = 6, kTrain = 4, kCycle = 2;
  std::vector<std::vector<float>> xs, want;
  std::vector<Layer> own;
  for (int i = 0; i < kInfer + kTrain + kCycle; ++i)
    xs.push_back(input(100 + i, T * B * std::max(I, H)));
  for (int i = 0; i < kTrain; ++i) own.emplace_back(200 + i);
  for (int i = 0; i < kInfer + kCycle; ++i) want.push_back(infer(p, xs[i], 1));
  for (int i = 0; i < kTrain; ++i) want.push_back(train(own[i], xs[kInfer + kCycle + i], 1));

  std::vector<int> bad(kInfer + kTrain + kCycle, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kInfer; ++i)
    threads.emplace_back([&, i] {
      for (int r = 0; r < kRounds; ++r) bad[i] += infer(p, xs[i], 2) != want[i];
    });
  for (int i = kInfer; i < kInfer + kCycle; ++i)
    threads.emplace_back([&, i] {
      for (int r = 0; r < kRounds; ++r) bad[i] += infer(p, xs[i], 1 + r % 4) != want[i];
    });
  for (int i = 0; i < kTrain; ++i)
    threads.emplace_back([&, i] {
      const int k = kInfer + kCycle + i;
      for (int r = 0; r < kRounds / 4; ++r) bad[k] += train(own[i], xs[k], 2) != want[k];
    });
  for (auto& t : threads) t.join();
  fastlstm_packed_free(p);

  int total = 0;
  for (int b : bad) total += b;
  std::printf("%d threads x %d rounds: %d results differ from the single-threaded ones\n",
              int(threads.size()), kRounds, total);
  return total == 0 ? 0 : 1;
}
