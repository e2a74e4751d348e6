/* fastlstm C API: the C++ kernels (fastlstm/rnn.h) behind a small C ABI.
 *
 * The tensor contract is the C++ one (see rnn.h): row-major arrays, T steps,
 * B rows, I inputs, H units, P projection (0 = none), Ho = P ? P : H, D = 1 or 2
 * directions; G gates (LSTM 4: i, f, g, o; GRU 3: r, z, n, as torch), GH = G*H;
 * peepholes [3,H] with rows i, f, o; lengths is int64 [B] (each in [1,T]) or
 * NULL. The GRU has no c state: its c0, cn, dcn, dc0 may be NULL.
 *
 * Every function returns a fastlstm_status. Nothing throws across this
 * boundary: on an error, fastlstm_last_error() gives a message naming the
 * argument, valid until the next fastlstm call on the same thread.
 * Handles are immutable once built, so threads may share them.
 */
#ifndef FASTLSTM_C_H_
#define FASTLSTM_C_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define FASTLSTM_C_API __declspec(dllexport)
#else
#define FASTLSTM_C_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fastlstm_status {
  FASTLSTM_OK = 0,
  FASTLSTM_INVALID_ARGUMENT = 1, /* bad dims, lengths, pointer, ISA, dtype */
  FASTLSTM_SIZE_OVERFLOW = 2,    /* a byte count would overflow */
  FASTLSTM_OUT_OF_MEMORY = 3,
  FASTLSTM_INTERNAL = 4
} fastlstm_status;

/* Cells (dims.cell); projection and peepholes are LSTM options. */
enum { FASTLSTM_CELL_LSTM = 0, FASTLSTM_CELL_GRU = 1 };

/* Kernel paths; FASTLSTM_ISA_BEST picks the best this CPU supports. */
enum { FASTLSTM_ISA_BEST = -1, FASTLSTM_ISA_SCALAR = 0, FASTLSTM_ISA_AVX2 = 1,
       FASTLSTM_ISA_AVX512 = 2 };

typedef struct fastlstm_dims {
  int64_t T, B, I, H;
  int64_t P;    /* projection size, 0 = none */
  int64_t D;    /* 1, or 2 = bidirectional */
  int peephole; /* 0 or 1 */
  int cell;     /* FASTLSTM_CELL_LSTM (the default of a zeroed field) or _GRU */
} fastlstm_dims;

/* One direction's weights; b_ih/b_hh may be NULL (no bias). */
typedef struct fastlstm_weights_f32 {
  const float* w_ih; /* [GH,I] */
  const float* w_hh; /* [GH,Ho] */
  const float* b_ih; /* [GH] or NULL */
  const float* b_hh; /* [GH] or NULL */
  const float* w_ph; /* [3,H] when peephole */
  const float* w_hr; /* [P,H] when P > 0 */
} fastlstm_weights_f32;

typedef struct fastlstm_weights_f64 {
  const double *w_ih, *w_hh, *b_ih, *b_hh, *w_ph, *w_hr; /* as fastlstm_weights_f32 */
} fastlstm_weights_f64;

/* One direction's gradients, accumulated into (+=); NULL b_* skips them. */
typedef struct fastlstm_grads_f32 {
  float *w_ih, *w_hh, *b_ih, *b_hh, *w_ph, *w_hr; /* shapes as fastlstm_weights_f32 */
} fastlstm_grads_f32;

typedef struct fastlstm_grads_f64 {
  double *w_ih, *w_hh, *b_ih, *b_hh, *w_ph, *w_hr;
} fastlstm_grads_f64;

/* Packed weights of one layer (all directions) for one ISA and dtype. */
typedef struct fastlstm_packed fastlstm_packed;

FASTLSTM_C_API const char* fastlstm_version(void);
FASTLSTM_C_API const char* fastlstm_last_error(void);
FASTLSTM_C_API int fastlstm_best_isa(void);
FASTLSTM_C_API int fastlstm_isa_supported(int isa);

/* Elements (of the layer's dtype, element_bytes 4 or 8) a training forward
 * saves for backward. */
FASTLSTM_C_API fastlstm_status fastlstm_workspace_size(const fastlstm_dims* dims,
                                                       const int64_t* lengths, int isa,
                                                       int element_bytes, int64_t* out);

/* Packs w [D] (copies it). with_backward = 1 also packs what backward needs.
 * Only dims->I, H, P, D, peephole and cell are read. Free with fastlstm_packed_free. */
FASTLSTM_C_API fastlstm_status fastlstm_pack_f32(const fastlstm_dims* dims,
                                                 const fastlstm_weights_f32* w, int isa,
                                                 int with_backward, int num_threads,
                                                 fastlstm_packed** out);
FASTLSTM_C_API fastlstm_status fastlstm_pack_f64(const fastlstm_dims* dims,
                                                 const fastlstm_weights_f64* w, int isa,
                                                 int with_backward, int num_threads,
                                                 fastlstm_packed** out);
FASTLSTM_C_API void fastlstm_packed_free(fastlstm_packed* p);

/* Forward of one layer: x [T,B,I], h0 [D,B,Ho], c0 [D,B,H] -> y [T,B,D*Ho],
 * hn [D,B,Ho], cn [D,B,H]. ws [fastlstm_workspace_size] for training, or
 * NULL for inference. The packing's ISA is used. */
FASTLSTM_C_API fastlstm_status fastlstm_forward_f32(const fastlstm_dims* dims,
                                                    const fastlstm_packed* p, const float* x,
                                                    const int64_t* lengths, const float* h0,
                                                    const float* c0, float* y, float* hn,
                                                    float* cn, float* ws, int num_threads);
FASTLSTM_C_API fastlstm_status fastlstm_forward_f64(const fastlstm_dims* dims,
                                                    const fastlstm_packed* p, const double* x,
                                                    const int64_t* lengths, const double* h0,
                                                    const double* c0, double* y, double* hn,
                                                    double* cn, double* ws, int num_threads);

/* BPTT from the forward's ws (same dims, x, lengths, c0; p packed with
 * with_backward): dy [T,B,D*Ho], dhn [D,B,Ho], dcn [D,B,H] -> dx [T,B,I],
 * dh0 [D,B,Ho], dc0 [D,B,H] (overwritten) and g [D] (accumulated). */
FASTLSTM_C_API fastlstm_status fastlstm_backward_f32(
    const fastlstm_dims* dims, const fastlstm_packed* p, const float* x,
    const int64_t* lengths, const float* c0, const float* ws, const float* dy,
    const float* dhn, const float* dcn, float* dx, float* dh0, float* dc0,
    const fastlstm_grads_f32* g, int num_threads);
FASTLSTM_C_API fastlstm_status fastlstm_backward_f64(
    const fastlstm_dims* dims, const fastlstm_packed* p, const double* x,
    const int64_t* lengths, const double* c0, const double* ws, const double* dy,
    const double* dhn, const double* dcn, double* dx, double* dh0, double* dc0,
    const fastlstm_grads_f64* g, int num_threads);

#ifdef __cplusplus
}
#endif

#endif /* FASTLSTM_C_H_ */
