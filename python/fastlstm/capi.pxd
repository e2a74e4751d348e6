# cython: language_level=3
"""fastlstm's C ABI for Cython: ``from fastlstm.capi cimport *``.

Compile with ``include_dirs=[fastlstm.get_include()]``; nothing to link. Call
``fastlstm_import()`` once (with the GIL) to get the table of entry points
(fastlstm/fastlstm_capi.h), then call them without the GIL. Every function
returns a fastlstm_status; on an error, ``api.last_error()`` names the
argument. The shapes and rules are fastlstm_c.h's (row-major, time-major).
"""
from libc.stdint cimport int64_t
from cpython.pycapsule cimport PyCapsule_GetPointer


cdef extern from "fastlstm/fastlstm_c.h" nogil:
    ctypedef enum fastlstm_status:
        FASTLSTM_OK
    enum:
        FASTLSTM_CELL_LSTM
        FASTLSTM_CELL_GRU
        FASTLSTM_CELL_LNLSTM
        FASTLSTM_ISA_BEST
        FASTLSTM_ISA_SCALAR
        FASTLSTM_ISA_AVX2
        FASTLSTM_ISA_AVX512

    ctypedef struct fastlstm_dims:
        int64_t T, B, I, H, P, D
        int peephole
        int cell

    ctypedef struct fastlstm_weights_f32:
        const float* w_ih
        const float* w_hh
        const float* b_ih
        const float* b_hh
        const float* w_ph
        const float* w_hr

    ctypedef struct fastlstm_weights_f64:
        const double* w_ih
        const double* w_hh
        const double* b_ih
        const double* b_hh
        const double* w_ph
        const double* w_hr

    ctypedef struct fastlstm_grads_f32:
        float* w_ih
        float* w_hh
        float* b_ih
        float* b_hh
        float* w_ph
        float* w_hr

    ctypedef struct fastlstm_grads_f64:
        double* w_ih
        double* w_hh
        double* b_ih
        double* b_hh
        double* w_ph
        double* w_hr

    ctypedef struct fastlstm_packed:
        pass


cdef extern from "fastlstm/fastlstm_capi.h" nogil:
    const char* FASTLSTM_CAPI_CAPSULE

    ctypedef struct fastlstm_capi:
        size_t size
        int abi_version
        const char* (*version)() nogil
        const char* (*last_error)() nogil
        int (*best_isa)() nogil
        int (*isa_supported)(int isa) nogil
        fastlstm_status (*workspace_size)(const fastlstm_dims*, const int64_t*, int, int,
                                          int64_t*) nogil
        fastlstm_status (*pack_f32)(const fastlstm_dims*, const fastlstm_weights_f32*, int, int,
                                    int, fastlstm_packed**) nogil
        fastlstm_status (*pack_f64)(const fastlstm_dims*, const fastlstm_weights_f64*, int, int,
                                    int, fastlstm_packed**) nogil
        void (*packed_free)(fastlstm_packed*) nogil
        fastlstm_status (*forward_f32)(const fastlstm_dims*, const fastlstm_packed*,
                                       const float*, const int64_t*, const float*, const float*,
                                       float*, float*, float*, float*, int) nogil
        fastlstm_status (*forward_f64)(const fastlstm_dims*, const fastlstm_packed*,
                                       const double*, const int64_t*, const double*,
                                       const double*, double*, double*, double*, double*,
                                       int) nogil
        fastlstm_status (*backward_f32)(const fastlstm_dims*, const fastlstm_packed*,
                                        const float*, const int64_t*, const float*, const float*,
                                        const float*, const float*, const float*, float*, float*,
                                        float*, const fastlstm_grads_f32*, int) nogil
        fastlstm_status (*backward_f64)(const fastlstm_dims*, const fastlstm_packed*,
                                        const double*, const int64_t*, const double*,
                                        const double*, const double*, const double*,
                                        const double*, double*, double*, double*,
                                        const fastlstm_grads_f64*, int) nogil


cdef inline const fastlstm_capi* fastlstm_import() except NULL:
    """The table of the installed fastlstm (raises ImportError or ValueError)."""
    from fastlstm import _core
    return <const fastlstm_capi*>PyCapsule_GetPointer(_core.c_api, FASTLSTM_CAPI_CAPSULE)
