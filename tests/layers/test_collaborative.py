"""MatrixFactorization and NeuMF against the formulas they implement, and through the shared harness."""
import numpy as np
import torch

from ember import layers, models
from tests.conftest import assert_close
from tests.layers.harness import check_layer


def ids(n=16, users=9, items=11):
    generator = torch.Generator().manual_seed(0)
    return torch.stack([torch.randint(0, users, (n,), generator=generator),
                        torch.randint(0, items, (n,), generator=generator)], dim=1)


def test_matrix_factorization_is_mean_plus_biases_plus_dot_product():
    layer = layers.MatrixFactorization(9, 11, factors=4, global_mean=3.5)
    x = ids()
    out = check_layer(layer, (16, 2), dtype=torch.long)
    assert out.shape == (16, 1)
    u, i = x[:, 0], x[:, 1]
    with torch.no_grad():
        torch.nn.init.normal_(layer.user_bias.embeddings)
        expected = (3.5 + layer.user_bias.embeddings[u, 0] + layer.item_bias.embeddings[i, 0]
                    + (layer.user_factors.embeddings[u] * layer.item_factors.embeddings[i]).sum(1))
        assert_close(layer(x)[:, 0], expected)


def test_neumf_joins_a_gmf_product_and_an_mlp_into_one_logit():
    layer = layers.NeuMF(9, 11, factors=4, mlp_units=(8, 6))
    check_layer(layer, (16, 2), dtype=torch.long)
    x = ids()
    u, i = x[:, 0], x[:, 1]
    with torch.no_grad():
        gmf = layer.gmf_user.embeddings[u] * layer.gmf_item.embeddings[i]
        hidden = torch.cat([layer.mlp_user.embeddings[u], layer.mlp_item.embeddings[i]], 1)
        dense = layer.mlp[1].linear
        mlp = torch.relu(hidden @ dense.weight.T + dense.bias)
        out = layer.output_layer.linear
        expected = torch.cat([gmf, mlp], 1) @ out.weight.T + out.bias
        layer.eval()
        assert_close(layer(x), expected)


def test_a_recommender_saves_and_loads_with_its_regularizers(tmp_path):
    model = models.create_model("matrix_factorization", num_users=9, num_items=11, factors=3, global_mean=3.0)
    model.compile("adam", "mse")
    x = ids().numpy()
    model.fit(x, np.full(len(x), 4.0, dtype="float32"), epochs=2, verbose=0)
    model.save(tmp_path / "mf.ember")
    loaded = models.load_model(tmp_path / "mf.ember")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert len(loaded.losses) == 4  # factor and bias tables of users and items
    assert_close(sum(loaded.losses), sum(model.losses))  # the same regularizers, not just as many
