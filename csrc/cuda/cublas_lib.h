// cuBLAS, loaded at run time (dlopen) rather than linked: a FASTLSTM_CUDA=ON
// build needs no cuBLAS to compile, and its extension imports (and its CPU
// paths run) on machines without it. The library is found when the backend is
// first used (Python passes the nvidia-cublas wheel's file, else the loader
// searches). The few entry points used are declared here, as cuBLAS's stable
// C ABI states them; cublas_lib.cpp checks them against <cublas_v2.h>
// wherever that header is found.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

struct cublasContext;  // cuBLAS's opaque handle type (global, as cuBLAS declares it)

namespace fastlstm {
namespace cuda {

namespace blas {
using Handle = cublasContext*;         // cublasHandle_t
using Status = int;                    // cublasStatus_t; 0 = success
enum Op : int { kN = 0, kT = 1 };      // cublasOperation_t
template <class T>
using Gemm64 = Status (*)(Handle, Op, Op, int64_t m, int64_t n, int64_t k, const T* alpha,
                          const T* A, int64_t lda, const T* B, int64_t ldb, const T* beta, T* C,
                          int64_t ldc);
}  // namespace blas

struct CublasLib {
  blas::Status (*create)(blas::Handle*);                  // cublasCreate_v2
  blas::Status (*set_stream)(blas::Handle, cudaStream_t);  // cublasSetStream_v2
  blas::Gemm64<float> sgemm;                              // cublasSgemm_v2_64
  blas::Gemm64<double> dgemm;                             // cublasDgemm_v2_64
  const char* (*status_string)(blas::Status);             // cublasGetStatusString
  std::string path;                                       // the file loaded
};

// cuBLAS's major version is the CUDA toolkit's.
constexpr int kCublasMajor = CUDART_VERSION / 1000;

// Loads cuBLAS from `path` (or the loader's search for libcublas.so.<major>,
// when empty). The first call decides; later calls return its result. ""
// on success, else why not.
std::string load_cublas(const std::string& path);
// The loaded library; throws std::runtime_error (saying why) when it is not.
const CublasLib& cublas();

}  // namespace cuda
}  // namespace fastlstm
