/* One LSTM layer with peepholes through the C ABI: pack, training forward,
 * BPTT, a finite-difference check of one gradient (float64), and the error
 * path (a bad argument gives a status and a message, never a crash). Then the
 * same layer with zoneout masks and the cell clip through the *_ex entry
 * points (C ABI 2), and its gradient checked the same way. */
#include <fastlstm/fastlstm_c.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { T = 5, B = 2, I = 3, H = 4 };

static double w_ih[4 * H * I], w_hh[4 * H * H], b_ih[4 * H], b_hh[4 * H], w_ph[3 * H];
static double x[T * B * I], h0[B * H], c0[B * H], dy[T * B * H];

static double rnd(unsigned* s) {
  *s = *s * 1103515245u + 12345u;
  return ((*s >> 8) & 0xffff) / 65536.0 - 0.5;
}

#define CHECK(call)                                                            \
  do {                                                                         \
    fastlstm_status st_ = (call);                                              \
    if (st_ != FASTLSTM_OK) {                                                  \
      fprintf(stderr, "%s failed (%d): %s\n", #call, (int)st_, fastlstm_last_error()); \
      return 1;                                                                \
    }                                                                          \
  } while (0)

static const fastlstm_dims dims = {T, B, I, H, 0, 1, 1};

static double keep[T * B * H]; /* zoneout masks [T,B,D*Ho]: 1 keeps h_{t-1} */

/* ABI 2: zoneout (p = 0.3, with the masks above) and the cell clip. */
static int loss_ex(double* out) {
  fastlstm_options opts = FASTLSTM_OPTIONS_INIT;
  opts.zoneout = 0.3;
  opts.cell_clip = 0.6;
  fastlstm_weights_ex_f64 w = FASTLSTM_WEIGHTS_EX_F64_INIT;
  fastlstm_weights_f64 base = {w_ih, w_hh, b_ih, b_hh, w_ph, NULL};
  w.base = base;
  fastlstm_packed* p = NULL;
  double y[T * B * H], hn[B * H], cn[B * H];
  CHECK(fastlstm_pack_ex_f64(&dims, &opts, &w, FASTLSTM_ISA_BEST, 0, 1, &p));
  fastlstm_status st =
      fastlstm_forward_ex_f64(&dims, &opts, p, x, NULL, h0, c0, keep, y, hn, cn, NULL, 1);
  fastlstm_packed_free(p);
  CHECK(st);
  *out = 0;
  for (int i = 0; i < T * B * H; ++i) *out += y[i] * dy[i];
  return 0;
}

/* Training forward and BPTT through ABI 2; the gradient of b_ih[k] against
 * central differences. */
static int zoneout_and_clip(int k) {
  for (int i = 0; i < T * B * H; ++i) keep[i] = (i * 7919 % 10) < 3; /* 30% kept */
  fastlstm_options opts = FASTLSTM_OPTIONS_INIT;
  opts.zoneout = 0.3;
  opts.cell_clip = 0.6;
  fastlstm_weights_ex_f64 w = FASTLSTM_WEIGHTS_EX_F64_INIT;
  fastlstm_weights_f64 base = {w_ih, w_hh, b_ih, b_hh, w_ph, NULL};
  w.base = base;
  fastlstm_packed* p = NULL;
  CHECK(fastlstm_pack_ex_f64(&dims, &opts, &w, FASTLSTM_ISA_BEST, 1, 2, &p));
  int64_t nws = 0;
  CHECK(fastlstm_workspace_size_ex(&dims, &opts, NULL, fastlstm_best_isa(), 8, &nws));
  double* ws = malloc(sizeof(double) * (size_t)nws);
  double y[T * B * H], hn[B * H], cn[B * H], zero[B * H] = {0};
  double dx[T * B * I], dh0[B * H], dc0[B * H];
  static double g_ih[4 * H * I], g_hh[4 * H * H], g_bih[4 * H], g_bhh[4 * H], g_ph[3 * H];
  fastlstm_grads_ex_f64 g = FASTLSTM_GRADS_EX_F64_INIT;
  fastlstm_grads_f64 gbase = {g_ih, g_hh, g_bih, g_bhh, g_ph, NULL};
  g.base = gbase;
  CHECK(fastlstm_forward_ex_f64(&dims, &opts, p, x, NULL, h0, c0, keep, y, hn, cn, ws, 2));
  CHECK(fastlstm_backward_ex_f64(&dims, &opts, p, x, NULL, c0, keep, ws, dy, zero, zero, dx,
                                 dh0, dc0, &g, 2));
  fastlstm_packed_free(p);
  free(ws);
  /* an unknown size is refused with a message naming the field */
  opts.size = 3;
  fastlstm_status st = fastlstm_workspace_size_ex(&dims, &opts, NULL, -1, 8, &nws);
  printf("opts.size = 3: status %d, \"%s\"\n", (int)st, fastlstm_last_error());
  if (st != FASTLSTM_INVALID_ARGUMENT) return 1;
  const double eps = 1e-6, b0 = b_ih[k];
  double lp, lm;
  b_ih[k] = b0 + eps;
  if (loss_ex(&lp)) return 1;
  b_ih[k] = b0 - eps;
  if (loss_ex(&lm)) return 1;
  b_ih[k] = b0;
  const double fd = (lp - lm) / (2 * eps), err = fabs(fd - g_bih[k]);
  printf("zoneout + cell clip (C ABI %d): db_ih[%d] = %.8f (fd %.8f)\n", fastlstm_abi_version(),
         k, g_bih[k], fd);
  if (!(err < 1e-7) || !(fabs(g_bih[k]) > 1e-6)) { /* a zero gradient would prove nothing */
    printf("zoneout gradient check failed: error %.3e\n", err);
    return 1;
  }
  printf("zoneout gradient check passed (error %.1e)\n", err);
  return 0;
}

/* L = sum(y * dy) of an inference forward on the current weights. */
static int loss(double* out) {
  fastlstm_weights_f64 w = {w_ih, w_hh, b_ih, b_hh, w_ph, NULL};
  fastlstm_packed* p = NULL;
  double y[T * B * H], hn[B * H], cn[B * H];
  CHECK(fastlstm_pack_f64(&dims, &w, FASTLSTM_ISA_BEST, 0, 1, &p));
  fastlstm_status st = fastlstm_forward_f64(&dims, p, x, NULL, h0, c0, y, hn, cn, NULL, 1);
  fastlstm_packed_free(p);
  CHECK(st);
  *out = 0;
  for (int i = 0; i < T * B * H; ++i) *out += y[i] * dy[i];
  return 0;
}

int main(void) {
  unsigned s = 11;
  double* all[] = {w_ih, w_hh, b_ih, b_hh, w_ph, x, h0, c0, dy};
  int sizes[] = {4 * H * I, 4 * H * H, 4 * H, 4 * H, 3 * H, T * B * I, B * H, B * H, T * B * H};
  for (int a = 0; a < 9; ++a)
    for (int i = 0; i < sizes[a]; ++i) all[a][i] = rnd(&s);

  fastlstm_weights_f64 w = {w_ih, w_hh, b_ih, b_hh, w_ph, NULL};
  fastlstm_packed* p = NULL;
  CHECK(fastlstm_pack_f64(&dims, &w, FASTLSTM_ISA_BEST, 1, 2, &p));
  int64_t nws = 0;
  CHECK(fastlstm_workspace_size(&dims, NULL, fastlstm_best_isa(), 8, &nws));
  double* ws = malloc(sizeof(double) * (size_t)nws);
  double y[T * B * H], hn[B * H], cn[B * H], zero[B * H] = {0};
  double dx[T * B * I], dh0[B * H], dc0[B * H];
  static double g_ih[4 * H * I], g_hh[4 * H * H], g_bih[4 * H], g_bhh[4 * H], g_ph[3 * H];
  fastlstm_grads_f64 g = {g_ih, g_hh, g_bih, g_bhh, g_ph, NULL};
  CHECK(fastlstm_forward_f64(&dims, p, x, NULL, h0, c0, y, hn, cn, ws, 2));
  CHECK(fastlstm_backward_f64(&dims, p, x, NULL, c0, ws, dy, zero, zero, dx, dh0, dc0, &g, 2));

  /* the error path: a float32 call on float64 weights, and bad dims */
  float xf[1] = {0};
  fastlstm_status st = fastlstm_forward_f32(&dims, p, xf, NULL, xf, xf, xf, xf, xf, NULL, 1);
  printf("float32 call on float64 weights: status %d, \"%s\"\n", (int)st, fastlstm_last_error());
  if (st != FASTLSTM_INVALID_ARGUMENT) return 1;
  fastlstm_dims bad = dims;
  bad.H = -1;
  fastlstm_packed* q = NULL;
  st = fastlstm_pack_f64(&bad, &w, FASTLSTM_ISA_BEST, 0, 1, &q);
  printf("H = -1: status %d, \"%s\"\n", (int)st, fastlstm_last_error());
  if (st != FASTLSTM_INVALID_ARGUMENT || q != NULL) return 1;
  fastlstm_packed_free(p);
  free(ws);

  /* central difference on one peephole weight */
  const double eps = 1e-6, w0 = w_ph[5];
  double lp, lm;
  w_ph[5] = w0 + eps;
  if (loss(&lp)) return 1;
  w_ph[5] = w0 - eps;
  if (loss(&lm)) return 1;
  w_ph[5] = w0;
  const double fd = (lp - lm) / (2 * eps), err = fabs(fd - g_ph[5]);
  printf("fastlstm %s (C ABI): y[0] = %.6f, dW_ph[5] = %.8f (fd %.8f)\n", fastlstm_version(),
         y[0], g_ph[5], fd);
  if (!(err < 1e-7)) {
    printf("gradient check failed: error %.3e\n", err);
    return 1;
  }
  printf("gradient check passed (error %.1e)\n", err);
  return zoneout_and_clip(9);
}
