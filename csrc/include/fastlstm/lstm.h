// fastlstm's C++ API under its first name: the LSTM is one cell of the
// generic recurrent-layer API in rnn.h (LayerDims::cell defaults to the LSTM).
#pragma once

#include "fastlstm/rnn.h"
