"""A BiLSTM sequence tagger (NER-style) in PyTorch with fastlstm.torch.LSTM.

    python examples/bilstm_tagger.py [--epochs 6]

The sentences come from a small generator in which some words ("jordan",
"georgia", ...) are a person or a place depending on their context, which may
come before them ("mr jordan") or after them ("jordan said"): a tagger needs
both directions. Sentences have different lengths and go in as a
PackedSequence. Prints the entity F1 on held-out sentences, overall and for
the ambiguous words whose clue comes after them.
"""
import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastlstm.torch as ft

PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank"]
PLACES = ["london", "oslo", "lima", "cairo", "delhi", "rome"]
BOTH = ["jordan", "georgia", "chad", "florence", "victoria", "lincoln"]
TAGS = ["O", "PER", "LOC"]


def sentence(rng):
    """(words, tags, ambiguous word positions whose clue comes after them)."""
    def who():
        return str(rng.choice(PEOPLE + BOTH))

    def where():
        return str(rng.choice(PLACES + BOTH))
    k = rng.integers(5)
    if k == 0:
        w, t = ["mr", who(), "met", who(), "in", where()], [0, 1, 0, 1, 0, 2]
    elif k == 1:
        w, t = ["we", "flew", "from", where(), "to", where()], [0, 0, 0, 2, 0, 2]
    elif k == 2:
        w, t = [who(), "said", "hello", "to", who()], [1, 0, 0, 0, 1]
    elif k == 3:
        w, t = [where(), "has", "a", "long", "coast"], [2, 0, 0, 0, 0]
    else:
        w, t = ["yesterday", who(), "visited", where(), "again"], [0, 1, 0, 2, 0]
    late = [i for i in range(len(w)) if w[i] in BOTH and k in (2, 3) and i == 0]
    return w, t, late


def data(rng, n, vocab):
    out = []
    for _ in range(n):
        w, t, late = sentence(rng)
        out.append(([vocab[x] for x in w], t, late))
    return out


def batches(items, size, rng=None):
    order = np.arange(len(items)) if rng is None else rng.permutation(len(items))
    for s in range(0, len(items), size):
        chunk = [items[i] for i in order[s:s + size]]
        lengths = torch.tensor([len(c[0]) for c in chunk])
        T = int(lengths.max())
        x = torch.zeros(len(chunk), T, dtype=torch.long)
        y = torch.full((len(chunk), T), -100, dtype=torch.long)  # ignored by the loss
        for b, (w, t, _) in enumerate(chunk):
            x[b, :len(w)] = torch.tensor(w)
            y[b, :len(t)] = torch.tensor(t)
        yield x, y, lengths, chunk


class Tagger(nn.Module):
    def __init__(self, vocab, emb=32, hidden=64):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = ft.LSTM(emb, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, len(TAGS))

    def forward(self, x, lengths):
        packed = pack_padded_sequence(self.emb(x), lengths, batch_first=True,
                                      enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return self.out(y)  # [B,T,tags]


def f1(pairs):
    """Entity F1 over (gold, predicted) tag pairs (single-token entities)."""
    tp = sum(g == p and g != 0 for g, p in pairs)
    pred = sum(p != 0 for _, p in pairs)
    gold = sum(g != 0 for g, _ in pairs)
    return 2 * tp / max(pred + gold, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    words = sorted({w for _ in range(2000) for w in sentence(rng)[0]} | set(BOTH))
    vocab = {w: i for i, w in enumerate(words)}
    train, test = data(rng, 3000, vocab), data(rng, 500, vocab)
    model = Tagger(len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        total = 0.0
        for x, y, lengths, _ in batches(train, 32, rng):
            loss = nn.functional.cross_entropy(model(x, lengths).flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(lengths)
        print(f"epoch {epoch + 1}  train loss {total / len(train):.4f}")
    seconds = time.perf_counter() - start

    model.eval()
    pairs, late = [], []
    with torch.no_grad():
        for x, y, lengths, chunk in batches(test, 100):
            pred = model(x, lengths).argmax(-1)
            for b, (w, t, lt) in enumerate(chunk):
                pairs += [(t[i], int(pred[b, i])) for i in range(len(w))]
                late += [(t[i], int(pred[b, i])) for i in lt]
    overall, clue_after = f1(pairs), f1(late)
    print(f"held-out entity F1 {overall:.3f}; ambiguous words whose clue comes after them: "
          f"F1 {clue_after:.3f} ({len(late)} words); trained in {seconds:.1f} s")
    return overall, clue_after


if __name__ == "__main__":
    main()
