# cython: language_level=3, boundscheck=False, wraparound=False
"""A per-token decoding loop in Cython over fastlstm's C ABI (the packed-weight
step at batch 1, the GIL released), compiled by tests/test_cython.py."""
from libc.stdint cimport int64_t
from libc.string cimport memcpy

import numpy as np

from fastlstm.capi cimport *

cdef const fastlstm_capi* api = fastlstm_import()


def stream(const float[:, ::1] w_ih, const float[:, ::1] w_hh, const float[::1] b_ih,
           const float[::1] b_hh, const float[:, ::1] xs, float[::1] h, float[::1] c,
           int threads=1):
    """Run xs.shape[0] LSTM steps at batch 1 from (h, c), updated in place."""
    cdef fastlstm_dims d
    d.T, d.B, d.I, d.H, d.P, d.D = 1, 1, xs.shape[1], h.shape[0], 0, 1
    d.peephole, d.cell = 0, FASTLSTM_CELL_LSTM
    cdef fastlstm_weights_f32 w
    w.w_ih, w.w_hh, w.b_ih, w.b_hh = &w_ih[0, 0], &w_hh[0, 0], &b_ih[0], &b_hh[0]
    w.w_ph, w.w_hr = NULL, NULL
    cdef fastlstm_packed* p = NULL
    if api.pack_f32(&d, &w, FASTLSTM_ISA_BEST, 0, threads, &p) != FASTLSTM_OK:
        raise ValueError(api.last_error().decode())
    cdef float[:, ::1] s = np.empty((5, h.shape[0]), dtype=np.float32)  # y, h x2, c x2
    memcpy(&s[1, 0], &h[0], h.shape[0] * sizeof(float))
    memcpy(&s[3, 0], &c[0], c.shape[0] * sizeof(float))
    cdef Py_ssize_t t, cur = 0
    cdef fastlstm_status st = FASTLSTM_OK
    with nogil:
        for t in range(xs.shape[0]):
            st = api.forward_f32(&d, p, &xs[t, 0], NULL, &s[1 + cur, 0], &s[3 + cur, 0],
                                 &s[0, 0], &s[2 - cur, 0], &s[4 - cur, 0], NULL, threads)
            if st != FASTLSTM_OK:
                break
            cur = 1 - cur
    api.packed_free(p)
    if st != FASTLSTM_OK:
        raise ValueError(api.last_error().decode())
    memcpy(&h[0], &s[1 + cur, 0], h.shape[0] * sizeof(float))
    memcpy(&c[0], &s[3 + cur, 0], c.shape[0] * sizeof(float))


def abi():
    """(table size, ABI version, library version) seen through the capsule."""
    return api.size, api.abi_version, api.version().decode()
