"""A small forward and backward of every CUDA kernel path, for
compute-sanitizer (bench/cuda_check.sh): the LSTM with peepholes, projection,
a cell clip, zoneout masks, lengths and both directions, and the GRU with
lengths, in float32 and float64."""
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastlstm.cuda
import fastlstm.torch as flt

fastlstm.cuda.require()
torch.manual_seed(0)
for dtype in (torch.float32, torch.float64):
    mods = [flt.LSTM(5, 8, num_layers=2, bidirectional=True, proj_size=3, peephole=True,
                     zoneout=0.2, cell_clip=0.9),
            flt.GRU(5, 8, bidirectional=True, zoneout=0.1)]
    for m in mods:
        m = m.to("cuda", dtype)
        x = torch.randn(6, 3, 5, device="cuda", dtype=dtype, requires_grad=True)
        y, _ = m(pack_padded_sequence(x, torch.tensor([6, 2, 4]), enforce_sorted=False))
        y.data.sum().backward()
        m.eval()
        with torch.no_grad():
            m(x)
torch.cuda.synchronize()
print("sanitize case: done")
