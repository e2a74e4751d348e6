"""One rank of a DistributedDataParallel run (gloo, loopback) of a model with
fastlstm.torch.LSTM; run by tests/test_distributed.py. argv: rank, world
size, port, output .npz. World size 1 runs the full batch in one process."""
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import fastlstm.torch as ft

rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = ft.LSTM(6, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(32, 1)

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.head(torch.cat([h[-2], h[-1]], dim=1)).squeeze(1)


g = torch.Generator().manual_seed(0)
B, T = 8, 12
x = torch.randn(B, T, 6, generator=g)
lengths = torch.randint(1, T + 1, (B,), generator=g)
y = torch.randn(B, generator=g)

torch.manual_seed(100 + rank)  # different weights per rank: DDP's broadcast must fix them
model = Model()
if world > 1:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    model = nn.parallel.DistributedDataParallel(model)
    part = slice(rank * B // world, (rank + 1) * B // world)
    x, lengths, y = x[part], lengths[part], y[part]
opt = torch.optim.SGD(model.parameters(), lr=0.1)
losses = []
for _ in range(3):
    loss = nn.functional.mse_loss(model(x, lengths), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(float(loss))
params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
np.savez(out, losses=np.array(losses), **{k.removeprefix("module."): v for k, v in params.items()})
if world > 1:
    dist.destroy_process_group()
