"""A small classifier trained in the test on data made in the test (two noisy 8x8 glyphs)."""

import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, n_in: int = 64, hidden: int = 16, n_out: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))
        self.register_buffer("scale", torch.tensor(1.0 / 255.0), persistent=False)

    def forward(self, x):
        return self.body(x * self.scale)


def make_data(n: int = 400, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    glyph_a = torch.zeros(8, 8)
    glyph_a[:, 3:5] = 255  # a vertical bar
    glyph_b = torch.zeros(8, 8)
    glyph_b[3:5, :] = 255  # a horizontal bar
    labels = torch.randint(0, 2, (n,), generator=g)
    base = torch.stack([glyph_a if y == 0 else glyph_b for y in labels]).reshape(n, 64)
    noise = torch.randint(0, 90, (n, 64), generator=g).float()
    return (base * 0.7 + noise).clamp(0, 255).round(), labels


def train(epochs: int = 60) -> TinyNet:
    torch.manual_seed(0)
    xs, ys = make_data()
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xs), ys)
        loss.backward()
        opt.step()
    return model.eval()


def predict(model, inputs):
    x = torch.as_tensor(inputs, dtype=torch.float32)
    return [str(int(i)) for i in model(x).argmax(dim=1)]
