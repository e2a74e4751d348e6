// The kernels' parallel regions: every one opens through here. The floating-point mode is per thread, so each
// thread of a region turns denormals off itself (core/denormals.h): a region
// that left it to the calling thread would round a worker's share otherwise.
#pragma once

#include <omp.h>

#include <cstdint>

#include "core/denormals.h"

namespace fastlstm {
namespace detail {

// body() on every thread of a team of nt.
template <class Body>
void parallel(int nt, Body&& body) {
#pragma omp parallel num_threads(nt)
  {
    const DenormalsOff daz;
    body();
  }
}

// body(i) for i in [0, n), split statically over nt threads.
template <class Body>
void parallel_for(int nt, int64_t n, Body&& body) {
#pragma omp parallel num_threads(nt)
  {
    const DenormalsOff daz;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) body(i);
  }
}

}  // namespace detail
}  // namespace fastlstm
