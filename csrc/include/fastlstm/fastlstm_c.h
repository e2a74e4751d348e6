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
 *
 * Two generations of entry points share one packed handle type:
 * - fastlstm_pack_f32 / _forward_ / _backward_ / _workspace_size (ABI 1) take
 *   the six weights of fastlstm_weights_* and no options; their structs and
 *   signatures never change.
 * - the *_ex functions (ABI 2) add a versioned options struct
 *   (fastlstm_options: zoneout, cell_clip), the zoneout masks, and versioned
 *   per-direction weight and gradient structs (fastlstm_weights_ex_*,
 *   fastlstm_grads_ex_*) that carry the layer-norm LSTM's parameters.
 *   Every versioned struct begins with `size`, which the caller sets to
 *   sizeof(the struct) as its header declares it (the FASTLSTM_*_INIT
 *   initialisers do). New fields are only ever appended: the library reads
 *   the fields the caller's size covers and gives the others their default
 *   (0 / NULL), and it refuses a size larger than it knows unless the extra
 *   bytes are all zero. So a program built against an older header works
 *   with a newer library, and one built against a newer header works with an
 *   older library as long as it leaves the newer fields at their defaults.
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

/* The C ABI generation of this header: 2 adds the *_ex entry points. */
#define FASTLSTM_C_ABI_VERSION 2

/* Cells (dims.cell); projection, peepholes and the cell clip are LSTM
 * options. The layer-norm LSTM takes its ln_* weights through
 * fastlstm_pack_ex_* (fastlstm_pack_* refuses it). */
enum { FASTLSTM_CELL_LSTM = 0, FASTLSTM_CELL_GRU = 1, FASTLSTM_CELL_LNLSTM = 2 };

/* Kernel paths; FASTLSTM_ISA_BEST picks the best this CPU supports. */
enum { FASTLSTM_ISA_BEST = -1, FASTLSTM_ISA_SCALAR = 0, FASTLSTM_ISA_AVX2 = 1,
       FASTLSTM_ISA_AVX512 = 2 };

typedef struct fastlstm_dims {
  int64_t T, B, I, H;
  int64_t P;    /* projection size, 0 = none */
  int64_t D;    /* 1, or 2 = bidirectional */
  int peephole; /* 0 or 1 */
  int cell;     /* FASTLSTM_CELL_LSTM (the default of a zeroed field), _GRU, _LNLSTM (*_ex) */
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
/* The C ABI generation the library implements (FASTLSTM_C_ABI_VERSION of its
 * header; >= 2: the *_ex functions exist). */
FASTLSTM_C_API int fastlstm_abi_version(void);
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

/* ------------------------------------------------------------------------
 * ABI 2: options, zoneout masks, extended weights (see the top of the file).
 * ------------------------------------------------------------------------ */

/* Per-call options of a layer, beyond fastlstm_dims. NULL = all defaults. */
typedef struct fastlstm_options {
  size_t size;      /* sizeof(fastlstm_options) */
  double zoneout;   /* haste's zoneout on h, p in [0, 1]; 0 = none. Each step
                       h_t = k*h_{t-1} + (1-k)*h~_t, k = zoneout_keep's element
                       where the call passes masks (training), else k = p
                       (inference). The zoned h is the output and next state. */
  double cell_clip; /* ONNX LSTM's clip: gate pre-activations (peepholes added)
                       clipped to [-cell_clip, cell_clip]; 0 = none; >= 0;
                       LSTM only. Zero gradient where a gate is clipped. */
} fastlstm_options;
#define FASTLSTM_OPTIONS_INIT {sizeof(fastlstm_options), 0.0, 0.0}

/* One direction's weights, extended. base: the six of ABI 1. ln_*: the
 * layer-norm LSTM's gains of LN(x W_ih^T), LN(h W_hh^T), LN(c) and the bias
 * of LN(c); read only for FASTLSTM_CELL_LNLSTM, else ignored. An array of D
 * of these is walked in steps of w[0].size bytes; every element must carry
 * the same size. */
typedef struct fastlstm_weights_ex_f32 {
  size_t size;               /* sizeof(fastlstm_weights_ex_f32) */
  fastlstm_weights_f32 base; /* w_ih, w_hh, b_ih, b_hh, w_ph, w_hr */
  const float* ln_ih;        /* [GH] */
  const float* ln_hh;        /* [GH] */
  const float* ln_c;         /* [H] */
  const float* ln_cb;        /* [H] */
} fastlstm_weights_ex_f32;
#define FASTLSTM_WEIGHTS_EX_F32_INIT {sizeof(fastlstm_weights_ex_f32), {0, 0, 0, 0, 0, 0}, 0, 0, 0, 0}

typedef struct fastlstm_weights_ex_f64 {
  size_t size; /* sizeof(fastlstm_weights_ex_f64) */
  fastlstm_weights_f64 base;
  const double *ln_ih, *ln_hh, *ln_c, *ln_cb; /* as fastlstm_weights_ex_f32 */
} fastlstm_weights_ex_f64;
#define FASTLSTM_WEIGHTS_EX_F64_INIT {sizeof(fastlstm_weights_ex_f64), {0, 0, 0, 0, 0, 0}, 0, 0, 0, 0}

/* One direction's gradients, extended (accumulated into, +=; shapes as the
 * weights; ln_* required for FASTLSTM_CELL_LNLSTM, else ignored). */
typedef struct fastlstm_grads_ex_f32 {
  size_t size; /* sizeof(fastlstm_grads_ex_f32) */
  fastlstm_grads_f32 base;
  float *ln_ih, *ln_hh, *ln_c, *ln_cb;
} fastlstm_grads_ex_f32;
#define FASTLSTM_GRADS_EX_F32_INIT {sizeof(fastlstm_grads_ex_f32), {0, 0, 0, 0, 0, 0}, 0, 0, 0, 0}

typedef struct fastlstm_grads_ex_f64 {
  size_t size; /* sizeof(fastlstm_grads_ex_f64) */
  fastlstm_grads_f64 base;
  double *ln_ih, *ln_hh, *ln_c, *ln_cb;
} fastlstm_grads_ex_f64;
#define FASTLSTM_GRADS_EX_F64_INIT {sizeof(fastlstm_grads_ex_f64), {0, 0, 0, 0, 0, 0}, 0, 0, 0, 0}

/* As fastlstm_workspace_size, with options (NULL = defaults). */
FASTLSTM_C_API fastlstm_status fastlstm_workspace_size_ex(const fastlstm_dims* dims,
                                                          const fastlstm_options* opts,
                                                          const int64_t* lengths, int isa,
                                                          int element_bytes, int64_t* out);

/* As fastlstm_pack_*, from w [D] extended weights (any cell). opts may be
 * NULL; packing reads none of its present fields (it is there for pack-time
 * options to come). */
FASTLSTM_C_API fastlstm_status fastlstm_pack_ex_f32(const fastlstm_dims* dims,
                                                    const fastlstm_options* opts,
                                                    const fastlstm_weights_ex_f32* w, int isa,
                                                    int with_backward, int num_threads,
                                                    fastlstm_packed** out);
FASTLSTM_C_API fastlstm_status fastlstm_pack_ex_f64(const fastlstm_dims* dims,
                                                    const fastlstm_options* opts,
                                                    const fastlstm_weights_ex_f64* w, int isa,
                                                    int with_backward, int num_threads,
                                                    fastlstm_packed** out);

/* As fastlstm_forward_*, with options (NULL = defaults) and zoneout_keep
 * [T,B,D*Ho] or NULL: the weight of h_{t-1} per step, row, direction and unit
 * (for training, Bernoulli(opts->zoneout) masks of 0 and 1, 1 keeping
 * h_{t-1}; direction d is columns [d*Ho, (d+1)*Ho)); NULL uses
 * opts->zoneout for every element. */
FASTLSTM_C_API fastlstm_status fastlstm_forward_ex_f32(
    const fastlstm_dims* dims, const fastlstm_options* opts, const fastlstm_packed* p,
    const float* x, const int64_t* lengths, const float* h0, const float* c0,
    const float* zoneout_keep, float* y, float* hn, float* cn, float* ws, int num_threads);
FASTLSTM_C_API fastlstm_status fastlstm_forward_ex_f64(
    const fastlstm_dims* dims, const fastlstm_options* opts, const fastlstm_packed* p,
    const double* x, const int64_t* lengths, const double* h0, const double* c0,
    const double* zoneout_keep, double* y, double* hn, double* cn, double* ws,
    int num_threads);

/* As fastlstm_backward_*, from a fastlstm_forward_ex_* training forward with
 * the same dims, opts, x, lengths, c0 and zoneout_keep; g [D] extended
 * gradients (accumulated into). */
FASTLSTM_C_API fastlstm_status fastlstm_backward_ex_f32(
    const fastlstm_dims* dims, const fastlstm_options* opts, const fastlstm_packed* p,
    const float* x, const int64_t* lengths, const float* c0, const float* zoneout_keep,
    const float* ws, const float* dy, const float* dhn, const float* dcn, float* dx,
    float* dh0, float* dc0, const fastlstm_grads_ex_f32* g, int num_threads);
FASTLSTM_C_API fastlstm_status fastlstm_backward_ex_f64(
    const fastlstm_dims* dims, const fastlstm_options* opts, const fastlstm_packed* p,
    const double* x, const int64_t* lengths, const double* c0, const double* zoneout_keep,
    const double* ws, const double* dy, const double* dhn, const double* dcn, double* dx,
    double* dh0, double* dc0, const fastlstm_grads_ex_f64* g, int num_threads);

#ifdef __cplusplus
}
#endif

#endif /* FASTLSTM_C_H_ */
