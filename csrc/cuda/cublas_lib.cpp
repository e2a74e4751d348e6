#include "cuda/cublas_lib.h"

#include <dlfcn.h>

#include <mutex>
#include <stdexcept>
#include <type_traits>

#if __has_include(<cublas_v2.h>)  // check cublas_lib.h's declarations against cuBLAS's
#include <cublas_v2.h>
namespace {
namespace blas = fastlstm::cuda::blas;
// A cuBLAS function type with its enums spelled as cublas_lib.h spells them.
template <class T>
struct Ours {
  using type = T;
};
template <>
struct Ours<cublasOperation_t> {
  using type = blas::Op;
};
template <>
struct Ours<cublasStatus_t> {
  using type = blas::Status;
};
template <class R, class... A>
struct Ours<R (*)(A...)> {
  using type = typename Ours<R>::type (*)(typename Ours<A>::type...);
};
template <class F>
using ours = typename Ours<F>::type;
using Lib = fastlstm::cuda::CublasLib;
static_assert(sizeof(blas::Op) == sizeof(cublasOperation_t) && int{blas::kN} == int{CUBLAS_OP_N} &&
              int{blas::kT} == int{CUBLAS_OP_T}, "cublasOperation_t");
static_assert(sizeof(blas::Status) == sizeof(cublasStatus_t) && CUBLAS_STATUS_SUCCESS == 0,
              "cublasStatus_t");
static_assert(fastlstm::cuda::kCublasMajor == CUBLAS_VER_MAJOR, "cuBLAS's major version");
static_assert(std::is_same<ours<decltype(&cublasCreate_v2)>, decltype(Lib::create)>::value,
              "cublasCreate_v2");
static_assert(std::is_same<ours<decltype(&cublasSetStream_v2)>,
                           decltype(Lib::set_stream)>::value, "cublasSetStream_v2");
static_assert(std::is_same<ours<decltype(&cublasSgemm_v2_64)>, decltype(Lib::sgemm)>::value,
              "cublasSgemm_v2_64");
static_assert(std::is_same<ours<decltype(&cublasDgemm_v2_64)>, decltype(Lib::dgemm)>::value,
              "cublasDgemm_v2_64");
static_assert(std::is_same<ours<decltype(&cublasGetStatusString)>,
                           decltype(Lib::status_string)>::value, "cublasGetStatusString");
}  // namespace
#endif

namespace fastlstm {
namespace cuda {
namespace {

struct Loaded {
  std::once_flag once;
  CublasLib lib{};
  std::string error = "cuBLAS was not loaded";
};

Loaded& state() {
  static Loaded s;
  return s;
}

template <class F>
bool sym(void* h, const char* name, F& f, std::string& missing) {
  f = reinterpret_cast<F>(dlsym(h, name));
  if (!f) missing += std::string(missing.empty() ? "" : ", ") + name;
  return f != nullptr;
}

std::string open(const std::string& path, CublasLib& lib) {
  const std::string file = path.empty() ? "libcublas.so." + std::to_string(kCublasMajor) : path;
  void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    return "cannot load cuBLAS (" + file + "): " + (e ? e : "unknown error") +
           "; install it with `pip install nvidia-cublas`";
  }
  std::string missing;
  sym(h, "cublasCreate_v2", lib.create, missing);
  sym(h, "cublasSetStream_v2", lib.set_stream, missing);
  sym(h, "cublasSgemm_v2_64", lib.sgemm, missing);
  sym(h, "cublasDgemm_v2_64", lib.dgemm, missing);
  sym(h, "cublasGetStatusString", lib.status_string, missing);
  if (!missing.empty()) {
    dlclose(h);
    return file + " lacks " + missing + " (fastlstm needs cuBLAS " +
           std::to_string(kCublasMajor) + ".x)";
  }
  lib.path = file;  // kept open for the life of the process
  return "";
}

}  // namespace

std::string load_cublas(const std::string& path) {
  Loaded& s = state();
  std::call_once(s.once, [&] { s.error = open(path, s.lib); });
  return s.error;
}

const CublasLib& cublas() {
  const std::string e = load_cublas("");
  if (!e.empty()) throw std::runtime_error(e);
  return state().lib;
}

}  // namespace cuda
}  // namespace fastlstm
