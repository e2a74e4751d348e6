/* fastlstm's C ABI as a table of function pointers, for extensions that run
 * inside the Python process (Cython, C): the installed Python module exports
 * it as the capsule fastlstm._core.c_api, named FASTLSTM_CAPI_CAPSULE, so
 * such an extension calls the very kernels the module runs without linking
 * against a library. fastlstm/capi.pxd declares it for Cython, with
 * fastlstm_import() to fetch it. Each pointer is the fastlstm_c.h function
 * of the same name without the fastlstm_ prefix; every one may be called
 * without the GIL.
 *
 * Versioned as fastlstm_c.h's structs: `size` is sizeof(fastlstm_capi) as
 * the library built it, and entries are only ever appended, so a caller
 * checks that size covers the entries it uses (FASTLSTM_CAPI_HAS). */
#ifndef FASTLSTM_CAPI_H_
#define FASTLSTM_CAPI_H_

#include <stddef.h>

#include "fastlstm/fastlstm_c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FASTLSTM_CAPI_CAPSULE "fastlstm._core.c_api"

typedef struct fastlstm_capi {
  size_t size; /* sizeof(fastlstm_capi) in the library */
  int abi_version;
  const char* (*version)(void);
  const char* (*last_error)(void);
  int (*best_isa)(void);
  int (*isa_supported)(int isa);
  fastlstm_status (*workspace_size)(const fastlstm_dims*, const int64_t*, int, int, int64_t*);
  fastlstm_status (*pack_f32)(const fastlstm_dims*, const fastlstm_weights_f32*, int, int, int,
                              fastlstm_packed**);
  fastlstm_status (*pack_f64)(const fastlstm_dims*, const fastlstm_weights_f64*, int, int, int,
                              fastlstm_packed**);
  void (*packed_free)(fastlstm_packed*);
  fastlstm_status (*forward_f32)(const fastlstm_dims*, const fastlstm_packed*, const float*,
                                 const int64_t*, const float*, const float*, float*, float*,
                                 float*, float*, int);
  fastlstm_status (*forward_f64)(const fastlstm_dims*, const fastlstm_packed*, const double*,
                                 const int64_t*, const double*, const double*, double*,
                                 double*, double*, double*, int);
  fastlstm_status (*backward_f32)(const fastlstm_dims*, const fastlstm_packed*, const float*,
                                  const int64_t*, const float*, const float*, const float*,
                                  const float*, const float*, float*, float*, float*,
                                  const fastlstm_grads_f32*, int);
  fastlstm_status (*backward_f64)(const fastlstm_dims*, const fastlstm_packed*, const double*,
                                  const int64_t*, const double*, const double*, const double*,
                                  const double*, const double*, double*, double*, double*,
                                  const fastlstm_grads_f64*, int);
} fastlstm_capi;

/* Whether the table t has the entry `field`. */
#define FASTLSTM_CAPI_HAS(t, field) \
  ((t)->size >= offsetof(fastlstm_capi, field) + sizeof((t)->field))

#ifdef __cplusplus
}
#endif

#endif /* FASTLSTM_CAPI_H_ */
