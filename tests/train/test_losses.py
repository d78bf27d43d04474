import pytest
import torch
import torch.nn.functional as F

from ember import losses
from tests.conftest import assert_close


def test_sparse_cce_matches_torch_on_logits_and_probabilities():
    logits, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    expected = F.cross_entropy(logits, y)
    assert_close(losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits), expected)
    assert_close(losses.get("sparse_categorical_crossentropy")(y, logits.softmax(-1)), expected)
    assert_close(losses.get("sparse_categorical_crossentropy")(y.unsqueeze(-1), logits.softmax(-1)), expected)


def test_sparse_cce_on_sequences():
    logits, y = torch.randn(2, 5, 4), torch.randint(0, 4, (2, 5))
    assert_close(losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits),
                 F.cross_entropy(logits.reshape(-1, 4), y.reshape(-1)))


def test_cce_with_label_smoothing_matches_torch():
    logits, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    onehot = F.one_hot(y, 4).float()
    assert_close(losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(onehot, logits),
                 F.cross_entropy(logits, y, label_smoothing=0.1))
    assert_close(losses.get("categorical_crossentropy")(onehot, logits.softmax(-1)), F.cross_entropy(logits, y))


def test_bce_matches_torch_and_accepts_flat_labels():
    logits, y = torch.randn(8, 1), torch.randint(0, 2, (8,)).float()
    expected = F.binary_cross_entropy_with_logits(logits.squeeze(-1), y)
    assert_close(losses.BinaryCrossentropy(from_logits=True)(y, logits), expected)
    assert_close(losses.get("binary_crossentropy")(y, logits.sigmoid()), expected, atol=1e-5, rtol=1e-4)


def test_probability_losses_clip_instead_of_returning_inf():
    probs = torch.tensor([[1.0, 0.0]])
    value = losses.get("sparse_categorical_crossentropy")(torch.tensor([1]), probs)
    assert torch.isfinite(value) and value == pytest.approx(-torch.log(torch.tensor(1e-7)).item(), rel=1e-3)


def test_regression_losses_and_weights():
    pred, y = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.0, 1.0, 1.0])
    assert_close(losses.get("mse")(y, pred), torch.tensor(10 / 3))
    assert_close(losses.get("mae")(y, pred), torch.tensor(4 / 3))
    weighted = losses.get("mse")(y, pred, torch.tensor([1.0, 1.0, 0.0]))
    assert_close(weighted, torch.tensor(1 / 3))  # sum_over_batch_size: divide by 3, not by the weight


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="unknown loss 'cross_entropy'"):
        losses.get("cross_entropy")
