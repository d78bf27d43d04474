"""Per-step training time of the classic Keras BiLSTM sentiment classifier at batch 32: ember vs PyTorch vs Keras 3.

Three contenders train the same network on the same padded token ids, in interleaved rounds in one process:
  ember   `model.fit(x, y, batch_size=32, epochs=1, verbose=0)` (accuracy metric on, as in the example)
  eager   a hand-written PyTorch loop: Embedding(padding_idx=0), a bidirectional nn.LSTM over
          `pack_padded_sequence` (so padding changes nothing, as mask_zero does), BCE with logits, Adam
          (torch's default, one tensor at a time on CPU; ember's is fused: most of ember's lead here)
  keras   Keras 3 with KERAS_BACKEND=torch, `model.fit(..., verbose=0)` (needs `pip install keras`)
The ids are SST-2 training sentences (vectorized by TextVectorization, padded at the end with 0) when
$EMBER_DATA has them, else random ids of random lengths. Prints each round, then the median ms/step and
the ratios ember/eager and ember/keras.

    python benchmarks/text.py --rounds 5 --steps 200
"""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from interleave import fit_runner, keras_runner, run_contenders, step_arguments  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

BATCH = 32
MAX_TOKENS = 20000
SEQUENCE_LENGTH = 56  # SST-2's longest training sentence has 48 tokens (mean 8.7)
TARGETS = {"eager": 1.05, "keras": 0.6}


def sst2_available() -> bool:
    from ember.datasets import sst2, store
    return all(store.find_local("sst2", name) for name in sst2.FILES)


def sst2_like(n: int):
    """(int64 ids (n, 56) padded at the end with 0, float32 0/1 labels): SST-2 when $EMBER_DATA has it, else random."""
    if sst2_available():
        from ember import datasets, layers
        (texts, labels), _ = datasets.sst2.load_data()
        vectorize = layers.TextVectorization(max_tokens=MAX_TOKENS, output_sequence_length=SEQUENCE_LENGTH)
        vectorize.adapt(texts)
        return vectorize.encode(texts[:n]), labels[:n].astype("float32")
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, SEQUENCE_LENGTH + 1, n)
    ids = rng.integers(2, MAX_TOKENS, (n, SEQUENCE_LENGTH), dtype=np.int64)
    ids[np.arange(SEQUENCE_LENGTH)[None, :] >= lengths[:, None]] = 0
    return ids, rng.integers(0, 2, n).astype("float32")


def sentiment_bilstm(layers, models):
    model = models.Sequential()
    model.add(layers.Embedding(MAX_TOKENS, 64, mask_zero=True))
    model.add(layers.Bidirectional(layers.LSTM(64)))
    model.add(layers.Dense(1, activation="sigmoid"))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def ember_runner(x, y):
    from ember import layers, models
    return fit_runner(sentiment_bilstm(layers, models), x, y, BATCH)


class PackedBiLSTM(nn.Module):
    """The model a PyTorch user writes for padded text: padding is packed away, not computed on."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(MAX_TOKENS, 64, padding_idx=0)
        self.lstm = nn.LSTM(64, 64, batch_first=True, bidirectional=True)
        self.out = nn.Linear(128, 1)

    def forward(self, ids):
        lengths = (ids != 0).sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h: (directions, batch, units), in the batch's own order
        return self.out(torch.cat([h[0], h[1]], dim=1)).squeeze(1)


def eager_runner(x, y):
    """The loop a PyTorch user writes by hand (torch defaults, no metrics)."""
    model = PackedBiLSTM()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids, labels = torch.from_numpy(x), torch.from_numpy(y)

    def epoch():
        model.train()
        order = torch.randperm(len(ids))
        for start in range(0, len(ids), BATCH):
            index = order[start:start + BATCH]
            loss = F.binary_cross_entropy_with_logits(model(ids[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return epoch


def main():
    args = step_arguments(__doc__, steps=200)
    torch.manual_seed(0)
    x, y = sst2_like(args.steps * BATCH)
    runners = {"ember": ember_runner(x, y), "eager": eager_runner(x, y),
               "keras": keras_runner(sentiment_bilstm, x, y, BATCH)}
    data = f"{'SST-2' if sst2_available() else 'random'} ids (mean length {(x != 0).sum(1).mean():.1f}), "
    run_contenders(runners, args, BATCH, TARGETS, data)

if __name__ == "__main__":
    main()
