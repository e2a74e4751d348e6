// The C ABI's function table that the module exports as the capsule
// fastlstm._core.c_api (fastlstm/fastlstm_capi.h).
#pragma once

#include "fastlstm/fastlstm_capi.h"

namespace fastlstm {
const fastlstm_capi* c_api_table();
}
