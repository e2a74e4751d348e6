// One immutable table of the C ABI's entry points (see fastlstm_capi.h).
#include "python/c_api_table.h"

namespace fastlstm {

const fastlstm_capi* c_api_table() {
  static const fastlstm_capi table = {
      sizeof(fastlstm_capi),  fastlstm_abi_version(), fastlstm_version,
      fastlstm_last_error,    fastlstm_best_isa,      fastlstm_isa_supported,
      fastlstm_workspace_size, fastlstm_pack_f32,     fastlstm_pack_f64,
      fastlstm_packed_free,   fastlstm_forward_f32,   fastlstm_forward_f64,
      fastlstm_backward_f32,  fastlstm_backward_f64,
  };
  return &table;
}

}  // namespace fastlstm
