"""The torch adapter tests' twin modules: torch.nn.LSTM and fastlstm.torch.LSTM
with the same weights (import only after importorskip("torch"))."""
import torch

import fastlstm.torch as flt


def lstm_pair(dtype=torch.float32, seed=0, **kw):
    """(torch.nn.LSTM, fastlstm.torch.LSTM) built from seed, fastlstm's loaded
    from torch's state_dict, both in dtype."""
    torch.manual_seed(seed)
    tm = torch.nn.LSTM(**kw).to(dtype)
    fm = flt.LSTM(**kw).to(dtype)
    fm.load_state_dict(tm.state_dict())
    return tm, fm
