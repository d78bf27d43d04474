"""MatrixFactorization and NeuMF against the formulas they implement, and through the shared harness."""
from unittest import mock

import numpy as np
import pytest
import torch

from ember import layers, models
from ember.layers.base import inference_pass
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


def trained_and_reloaded(model, path):
    """`model` fitted briefly, saved to `path` and loaded back; the copy predicts identically."""
    model.compile("adam", "mse")
    x = ids().numpy()
    model.fit(x, np.full(len(x), 4.0, dtype="float32"), epochs=2, verbose=0)
    model.save(path)
    loaded = models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    return loaded, x


def test_a_recommender_saves_and_loads_with_its_regularizers(tmp_path):
    model = models.create_model("matrix_factorization", num_users=9, num_items=11, factors=3, global_mean=3.0)
    loaded, x = trained_and_reloaded(model, tmp_path / "mf.ember")
    assert len(loaded.losses) == 4  # factor and bias tables of users and items
    assert_close(sum(loaded.losses), sum(model.losses))  # the same regularizers, not just as many


# 9 users, 11 items: six rated pairs, 2 attributes per user (ids < 5), 3 per item (ids < 4)
SIDE = {"interactions": [[1, 2], [1, 5], [1, 7], [3, 2], [8, 10], [8, 1]],
        "user_attributes": np.arange(18).reshape(9, 2) % 5, "item_attributes": np.arange(33).reshape(11, 3) % 4}


def svdpp_layer():
    layer = layers.SVDPlusPlus(9, 11, factors=4, global_mean=3.5, implicit_interactions=6, user_attributes=5,
                               user_attributes_per_row=2, item_attributes=4, item_attributes_per_row=3,
                               factors_regularizer={"l2": 0.1}, bias_regularizer={"l2": 0.01},
                               side_regularizer={"l2": 1e-3})
    layer.set_side_information(**SIDE)
    return layer


def test_svdpp_adds_implicit_feedback_and_mean_attribute_vectors_to_biased_mf():
    layer = svdpp_layer()
    x = ids()
    check_layer(layer, (16, 2), dtype=torch.long)
    layer.set_side_information(interactions=SIDE["interactions"])  # again, once built
    with torch.no_grad():
        for weight in (layer.user_bias.embeddings, layer.implicit_factors, layer.user_attribute_factors,
                       layer.item_attribute_factors, layer.user_attribute_bias, layer.item_attribute_bias):
            torch.nn.init.normal_(weight)

        def attributes(table, ids_row):
            kept = [i for i in ids_row.tolist() if i != 0]
            return table[kept].mean(0) if kept else torch.zeros(table.shape[1])
        rated = {1: [2, 5, 7], 3: [2], 8: [1, 10]}
        expected = []
        for u, i in x.tolist():
            p = layer.user_factors.embeddings[u].clone()
            if u in rated:
                p += layer.implicit_factors[rated[u]].sum(0) / len(rated[u]) ** 0.5
            p += attributes(layer.user_attribute_factors, layer.user_attribute_ids[u])
            q = layer.item_factors.embeddings[i] + attributes(layer.item_attribute_factors, layer.item_attribute_ids[i])
            bias = (3.5 + layer.user_bias.embeddings[u, 0] + layer.item_bias.embeddings[i, 0]
                    + attributes(layer.user_attribute_bias, layer.user_attribute_ids[u])[0]
                    + attributes(layer.item_attribute_bias, layer.item_attribute_ids[i])[0])
            expected.append(bias + p @ q)
        layer.train()
        assert_close(layer(x)[:, 0], torch.stack(expected))  # training: the batch users' rows
        layer.eval()
        assert_close(layer(x)[:, 0], torch.stack(expected))  # evaluation: every user's, fixed shapes


def test_svdpp_sums_every_users_implicit_vectors_once_per_inference_pass():
    layer = svdpp_layer()
    layer.build((None, 2))
    x = ids()
    layer.eval()
    with mock.patch.object(layer, "_implicit_of_every_user", wraps=layer._implicit_of_every_user) as summed:
        with torch.no_grad():
            first = layer(x)
            assert torch.equal(layer(x), first) and summed.call_count == 2  # outside a pass: every call
            with inference_pass():
                assert torch.equal(layer(x), first) and torch.equal(layer(x), first) and summed.call_count == 3
            torch.nn.init.normal_(layer.implicit_factors)  # between passes, as an optimizer step
            with inference_pass():
                changed = layer(x)
                assert summed.call_count == 4 and not torch.equal(changed, first)
                with torch.enable_grad():
                    layer(x).sum().backward()  # under autograd: summed afresh, the gradient reaches the table
                assert summed.call_count == 5 and layer.implicit_factors.grad.abs().sum() > 0
    model = models.Sequential([layer])
    model.build((None, 2))
    model.compile("adam", "mse")
    with mock.patch.object(layer, "_implicit_of_every_user", wraps=layer._implicit_of_every_user) as summed:
        predicted = model.predict(x.numpy(), batch_size=4, verbose=0)  # four batches, one pass
        model.evaluate(x.numpy(), np.zeros(len(x), dtype="float32"), batch_size=4, verbose=0)
    assert summed.call_count == 2
    layer.train()
    with torch.no_grad():
        assert_close(torch.from_numpy(predicted), layer(x))  # what a pass keeps is what training computes


def test_svdpp_exports_to_onnx_and_matches_onnx_runtime(tmp_path):
    pytest.importorskip("onnxruntime")
    from ember.export.onnx import export_onnx
    model = models.Sequential([svdpp_layer()])
    model.build((None, 2))
    model.layers[0].set_side_information(interactions=SIDE["interactions"])
    model.compile("adam", "mse")
    x = ids().numpy()
    model.fit(x, np.full(len(x), 4.0, dtype="float32"), epochs=3, verbose=0)
    result = export_onnx(model, tmp_path / "svdpp.onnx")
    assert result["max_abs_diff"] <= 1e-5


def test_svdpp_refuses_side_information_of_the_wrong_shape():
    with pytest.raises(ValueError, match="user_attributes=5 with user_attributes_per_row=0"):
        layers.SVDPlusPlus(9, 11, user_attributes=5)
    with pytest.raises(ValueError, match="factors=-2"):
        layers.SVDPlusPlus(9, 11, factors=-2)
    layers.SVDPlusPlus(9, 11).set_side_information(interactions=np.zeros((0, 2)))  # no implicit feedback: fine
    layer = svdpp_layer()
    with pytest.raises(ValueError, match="interactions has shape"):
        layer.set_side_information(interactions=[[1, 2]])
    with pytest.raises(ValueError, match="item_attributes holds ids outside 0..3"):
        layer.set_side_information(item_attributes=np.full((11, 3), 4))


def test_svdpp_saves_its_side_information_and_penalizes_per_rating(tmp_path):
    model = models.create_model("svdpp", num_users=9, num_items=11, factors=3, global_mean=3.0,
                                implicit_interactions=6, user_attributes=5, user_attributes_per_row=2,
                                item_attributes=4, item_attributes_per_row=3)
    model.build((None, 2))
    model.layers[0].set_side_information(**SIDE)
    loaded, x = trained_and_reloaded(model, tmp_path / "svdpp.ember")
    torch.testing.assert_close(loaded.layers[0].interaction_items, model.layers[0].interaction_items)
    assert len(model.losses) == 5  # the implicit and attribute tables; the factor rows are penalized per batch
    with torch.no_grad():
        penalty = (0.1 * (model.layers[0].user_factors(torch.as_tensor(x[:, 0])).square().sum()
                          + model.layers[0].item_factors(torch.as_tensor(x[:, 1])).square().sum())
                   + 0.01 * (model.layers[0].user_bias(torch.as_tensor(x[:, 0])).square().sum()
                             + model.layers[0].item_bias(torch.as_tensor(x[:, 1])).square().sum())) / len(x)
        mse = ((model(torch.as_tensor(x))[:, 0] - 4.0) ** 2).mean()
    assert_close(model.evaluate(x, np.full(len(x), 4.0, dtype="float32"), batch_size=len(x), verbose=0),
                 mse + penalty + sum(model.losses))
