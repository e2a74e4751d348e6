// The CUDA backend: the device of cuda/driver.h's drivers on a stream
// (cuBLAS products and one grid-stride kernel that runs any step functor),
// and the entry points of fastlstm/cuda.h.
#include <cuda_runtime.h>

#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/check.h"
#include "cuda/cublas_lib.h"
#include "cuda/driver.h"
#include "fastlstm/cuda.h"

namespace fastlstm {
namespace cuda {
namespace {

void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " +
                             cudaGetErrorString(e));
}

void ok_blas(blas::Status s, const char* what) {
  if (s != 0)
    throw std::runtime_error(std::string("cuBLAS error in ") + what + ": " +
                             cublas().status_string(s));
}

template <class F>
__global__ void for_each_kernel(int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride)
    f(i);
}

// cuBLAS handles, one per (thread, device) while the thread uses it. A
// thread's handles go back to a shared pool when it exits (creating one
// costs milliseconds), so the pool holds at most as many handles per device
// as threads ever called at once. Pool access is locked.
class HandlePool {
 public:
  blas::Handle take(int device) {
    {
      std::lock_guard<std::mutex> g(m_);
      std::vector<blas::Handle>& free = free_[device];
      if (!free.empty()) {
        blas::Handle h = free.back();
        free.pop_back();
        return h;
      }
    }
    blas::Handle h = nullptr;
    ok_blas(cublas().create(&h), "cublasCreate");
    return h;
  }
  void give(int device, blas::Handle h) {
    std::lock_guard<std::mutex> g(m_);
    free_[device].push_back(h);
  }

 private:
  std::mutex m_;
  std::unordered_map<int, std::vector<blas::Handle>> free_;
};

HandlePool& pool() {
  static HandlePool* p = new HandlePool;  // never destroyed: threads may outlive statics
  return *p;
}

struct ThreadHandles {
  std::unordered_map<int, blas::Handle> mine;
  ~ThreadHandles() {
    for (auto& kv : mine) pool().give(kv.first, kv.second);
  }
  blas::Handle get(int device) {
    auto it = mine.find(device);
    if (it != mine.end()) return it->second;
    return mine[device] = pool().take(device);
  }
};

blas::Handle handle_for(int device) {
  thread_local ThreadHandles handles;
  return handles.get(device);
}

// Makes `device` current for a scope.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    ok(cudaGetDevice(&old_), "cudaGetDevice");
    if (old_ != device) ok(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() {
    int now = -1;
    if (cudaGetDevice(&now) == cudaSuccess && now != old_) cudaSetDevice(old_);
  }

 private:
  int old_ = 0;
};

blas::Op op(bool t) { return t ? blas::kT : blas::kN; }
blas::Gemm64<float> gemm_of(const CublasLib& l, float) { return l.sgemm; }
blas::Gemm64<double> gemm_of(const CublasLib& l, double) { return l.dgemm; }

struct CudaDev {
  cudaStream_t stream;
  blas::Handle handle;

  template <class T>
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
            int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
    const ColMajorGemm g = col_major(ta, tb, M, N, K, lda, ldb, ldc);
    ok_blas(gemm_of(cublas(), T())(handle, op(g.ta), op(g.tb), g.m, g.n, g.k, &alpha,
                                   g.a_is_B ? B : A, g.lda, g.a_is_B ? A : B, g.ldb, &beta,
                                   C, g.ldc),
            "cublas gemm");
  }
  template <class F>
  void for_each(int64_t n, const F& f) {
    if (n <= 0) return;
    for_each_kernel<<<static_cast<unsigned>(launch_blocks(n)), kBlock, 0, stream>>>(n, f);
    ok(cudaGetLastError(), "a pointwise kernel launch");
  }
  template <class T>
  void zero(T* p, int64_t n) {
    if (n > 0) ok(cudaMemsetAsync(p, 0, sizeof(T) * n, stream), "cudaMemsetAsync");
  }
  template <class T>
  void copy(T* dst, const T* src, int64_t n) {
    if (n > 0)
      ok(cudaMemcpyAsync(dst, src, sizeof(T) * n, cudaMemcpyDeviceToDevice, stream),
         "cudaMemcpyAsync");
  }
};

// The device every pointer of a call lives on: x's, and every other must be
// device memory on it (or managed memory).
class PointerCheck {
 public:
  explicit PointerCheck(const void* x) : device_(device_of(x, "x")) {}
  int device() const { return device_; }
  void operator()(const void* p, const char* name) const {
    if (!p) return;
    const int d = device_of(p, name);
    detail::require(d == device_, name, ": on cuda:", d, ", expected cuda:", device_,
                    " (x's device)");
  }

 private:
  static int device_of(const void* p, const char* name) {
    cudaPointerAttributes a{};
    const cudaError_t e = cudaPointerGetAttributes(&a, p);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear it
      detail::require(false, name, ": not a CUDA pointer (", cudaGetErrorString(e), ")");
    }
    detail::require(a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged, name,
                    ": expected device memory, got ",
                    a.type == cudaMemoryTypeHost ? "pinned host memory" : "host memory");
    return a.device;
  }
  int device_;
};

template <class W>
void check_dir_pointers(const PointerCheck& pc, const W& w) {
  pc(w.w_ih, "weight_ih");
  pc(w.w_hh, "weight_hh");
  pc(w.b_ih, "bias_ih");
  pc(w.b_hh, "bias_hh");
  pc(w.w_ph, "weight_ph");
  pc(w.w_hr, "weight_hr");
}

}  // namespace
}  // namespace cuda

inline namespace v1 {

template <class T>
void cuda_layer_forward(const LayerDims& d, const DirWeights<T>* w, const T* x,
                        const int64_t* lengths, const T* h0, const T* c0, T* y, T* hn, T* cn,
                        T* ws, T* scratch, void* stream, const T* zoneout_keep) {
  cuda::check_layer_pointers(d, w, x, y, hn, cn, scratch);
  const cuda::PointerCheck pc(x);
  for (int64_t k = 0; k < d.D; ++k) cuda::check_dir_pointers(pc, w[k]);
  pc(lengths, "lengths"), pc(h0, "h0"), pc(c0, "c0"), pc(y, "y"), pc(hn, "h_n");
  pc(cn, "c_n"), pc(ws, "workspace"), pc(scratch, "scratch"), pc(zoneout_keep, "zoneout_mask");
  const cuda::DeviceScope scope(pc.device());
  cuda::CudaDev dev{static_cast<cudaStream_t>(stream), cuda::handle_for(pc.device())};
  cuda::ok_blas(cuda::cublas().set_stream(dev.handle, dev.stream), "cublasSetStream");
  cuda::forward_layer<T>(dev, d, w, x, lengths, h0, c0, y, hn, cn, ws, scratch, zoneout_keep);
}

template <class T>
void cuda_layer_backward(const LayerDims& d, const DirWeights<T>* w, const T* x,
                         const int64_t* lengths, const T* ws, const T* dy, const T* dhn,
                         const T* dcn, T* dx, T* dh0, T* dc0, const DirGrads<T>* g,
                         T* scratch, void* stream, const T* zoneout_keep) {
  cuda::check_layer_pointers(d, w, x, dx, dh0, dc0, scratch);
  detail::require(ws && dy && g, "workspace, dy and the gradients must not be null");
  const cuda::PointerCheck pc(x);
  for (int64_t k = 0; k < d.D; ++k) {
    cuda::check_dir_pointers(pc, w[k]);
    cuda::check_dir_pointers(pc, g[k]);
  }
  pc(lengths, "lengths"), pc(ws, "workspace"), pc(dy, "dy"), pc(dhn, "dh_n");
  pc(dcn, "dc_n"), pc(dx, "dx"), pc(dh0, "dh0"), pc(dc0, "dc0"), pc(scratch, "scratch");
  pc(zoneout_keep, "zoneout_mask");
  const cuda::DeviceScope scope(pc.device());
  cuda::CudaDev dev{static_cast<cudaStream_t>(stream), cuda::handle_for(pc.device())};
  cuda::ok_blas(cuda::cublas().set_stream(dev.handle, dev.stream), "cublasSetStream");
  cuda::backward_layer<T>(dev, d, w, x, lengths, ws, dy, dhn, dcn, dx, dh0, dc0, g, scratch,
                          zoneout_keep);
}

#define FL_INSTANTIATE(T)                                                                    \
  template void cuda_layer_forward<T>(const LayerDims&, const DirWeights<T>*, const T*,      \
                                      const int64_t*, const T*, const T*, T*, T*, T*, T*, T*, \
                                      void*, const T*);                                      \
  template void cuda_layer_backward<T>(const LayerDims&, const DirWeights<T>*, const T*,     \
                                       const int64_t*, const T*, const T*, const T*,         \
                                       const T*, T*, T*, T*, const DirGrads<T>*, T*, void*,  \
                                       const T*);
FL_INSTANTIATE(float)
FL_INSTANTIATE(double)
#undef FL_INSTANTIATE

bool cuda_built() { return true; }

int cuda_runtime_version() { return CUDART_VERSION; }

std::string cuda_load_cublas(const std::string& path) { return cuda::load_cublas(path); }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string cuda_describe() {
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  std::string s = "runtime " + std::to_string(rt / 1000) + "." + std::to_string(rt % 1000 / 10);
  if (cudaDriverGetVersion(&drv) != cudaSuccess || drv == 0) {
    cudaGetLastError();
    return s + "; no CUDA driver";
  }
  s += "; driver " + std::to_string(drv / 1000) + "." + std::to_string(drv % 1000 / 10);
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return s + "; no device (" + cudaGetErrorString(e) + ")";
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    s += "; cuda:" + std::to_string(i) + " " + p.name + " (sm_" + std::to_string(p.major) +
         std::to_string(p.minor) + ", " + std::to_string(p.totalGlobalMem >> 20) + " MiB)";
  }
  return s;
}

}  // namespace v1
}  // namespace fastlstm
