// The XLA FFI handlers of fastlstm (jax/ffi.cpp), declared without the XLA
// headers so that the Python module can hand them to jax as capsules.
#pragma once

extern "C" {
struct XLA_FFI_Error;
struct XLA_FFI_CallFrame;
XLA_FFI_Error* FastlstmRnnLayerFwd(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* FastlstmRnnLayerBwd(XLA_FFI_CallFrame* call_frame);
}

namespace fastlstm {
namespace jax_ffi {
// The XLA FFI API version of the headers the handlers were compiled against.
int api_major();
int api_minor();
}  // namespace jax_ffi
}  // namespace fastlstm
