"""The torch adapter tests' twin modules: torch.nn.LSTM / GRU and
fastlstm.torch.LSTM / GRU with the same weights (import only after
importorskip("torch"))."""
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


def gru_pair(dtype=torch.float32, seed=0, from_fastlstm=False, **kw):
    """(torch.nn.GRU, fastlstm.torch.GRU) built from seed, in dtype, with the
    same weights: fastlstm's loaded from torch's state_dict, or torch's from
    fastlstm's (from_fastlstm=True)."""
    torch.manual_seed(seed)
    tm = torch.nn.GRU(**kw).to(dtype)
    torch.manual_seed(seed + 1000)
    fm = flt.GRU(**kw).to(dtype)
    if from_fastlstm:
        tm.load_state_dict(fm.state_dict())
    else:
        fm.load_state_dict(tm.state_dict())
    return tm, fm
