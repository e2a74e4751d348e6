"""Time-series forecasting of a real series: the yearly sunspot numbers
(1700-2008, from statsmodels' datasets), with fastlstm.torch.LSTM in PyTorch.

    pip install statsmodels matplotlib   # the data, and the plot
    python examples/forecast_sunspots.py [--epochs 300] [--plot sunspots.png]

Trains on 1700-1959 to predict next year's number from the last 24 years, then
forecasts 1960-2008 one year ahead and prints the mean absolute error next to
two baselines fitted on the same years: last year's value, and statsmodels'
AutoReg(9) (a linear autoregression). The plot shows the forecast.
"""
import argparse
import time

import numpy as np
import torch
from torch import nn

import fastlstm.torch as ft

LAGS, SPLIT = 24, 1960


def load():
    from statsmodels.datasets import sunspots
    d = sunspots.load_pandas().data
    return d["YEAR"].to_numpy().astype(int), d["SUNACTIVITY"].to_numpy().astype(np.float64)


class Forecaster(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.lstm = ft.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):  # x [B,LAGS,1] -> [B]
        y, _ = self.lstm(x)
        return self.head(y[:, -1]).squeeze(-1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--plot", default="sunspots_forecast.png", help="'' for no plot")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    years, spots = load()
    z = np.sqrt(spots)  # the usual variance-stabilizing transform of counts
    mean, std = z[years < SPLIT].mean(), z[years < SPLIT].std()
    z = ((z - mean) / std).astype(np.float32)
    idx = np.arange(LAGS, len(z))  # predict z[i] from z[i-LAGS:i]
    x = torch.from_numpy(np.stack([z[i - LAGS:i] for i in idx])[:, :, None])
    y = torch.from_numpy(z[idx])
    train = years[idx] < SPLIT

    model = Forecaster()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        loss = nn.functional.mse_loss(model(x[train]), y[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % 100 == 0 or epoch == args.epochs - 1:
            print(f"epoch {epoch:4d}  train mse {float(loss):.4f}")
    seconds = time.perf_counter() - start
    with torch.no_grad():
        pred_z = model(x).numpy()
    pred = np.maximum(pred_z * std + mean, 0) ** 2  # back to sunspot numbers
    test = ~train
    actual = spots[idx][test]
    mae = float(np.mean(np.abs(pred[test] - actual)))
    naive = float(np.mean(np.abs(spots[idx - 1][test] - actual)))

    from statsmodels.tsa.ar_model import AutoReg
    fit = AutoReg(spots[years < SPLIT], lags=9).fit()
    ar = np.array([fit.params[0] + fit.params[1:] @ spots[i - 9:i][::-1] for i in idx[test]])
    ar_mae = float(np.mean(np.abs(ar - actual)))
    print(f"{int(test.sum())} forecasts ({SPLIT}-{years[-1]}), one year ahead, mean absolute "
          f"error: LSTM {mae:.1f}, AutoReg(9) {ar_mae:.1f}, last year's value {naive:.1f} "
          f"(trained in {seconds:.1f} s)")

    if args.plot:
        try:
            import matplotlib
        except ImportError:
            print("matplotlib is not installed: no plot")
            return mae, ar_mae, naive
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.plot(years, spots, color="0.6", lw=1, label="sunspot number")
        ax.plot(years[idx][test], pred[test], color="C3", lw=1.5, label="LSTM, one year ahead")
        ax.plot(years[idx][test], ar, color="C0", lw=1, ls="--", label="AutoReg(9)")
        ax.axvline(SPLIT, color="k", lw=0.8)
        ax.set_xlabel("year")
        ax.legend(loc="upper left", frameon=False)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")
    return mae, ar_mae, naive


if __name__ == "__main__":
    main()
