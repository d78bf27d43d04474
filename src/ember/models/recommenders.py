"""Registered recommenders: (user, item) id pairs in, a rating or an interaction probability out."""
from ember import layers
from ember.models.registry import register_model
from ember.models.sequential import Sequential


def _l2(value: float):
    return {"l2": value} if value else None


@register_model("matrix_factorization")
def matrix_factorization(num_users, num_items, factors=64, l2=1.25e-4, bias_l2=1.25e-5, global_mean=0.0) -> Sequential:
    """Biased MF for explicit ratings: `mean + b_user + b_item + p_user . q_item`, with an L2 penalty of
    `l2 * sum(w**2)` on the factor tables and `bias_l2` on the bias tables added to each batch's loss."""
    return Sequential([
        layers.MatrixFactorization(num_users, num_items, factors, global_mean=global_mean,
                                   embeddings_regularizer=_l2(l2), bias_regularizer=_l2(bias_l2)),
    ], name="matrix_factorization")


@register_model("svdpp")
def svdpp(num_users, num_items, factors=128, l2=0.1, bias_l2=0.01, side_l2=1.25e-5, global_mean=0.0,
          implicit_interactions=0, user_attributes=0, user_attributes_per_row=0, item_attributes=0,
          item_attributes_per_row=0) -> Sequential:
    """SVD++ with side information for explicit ratings (see `layers.SVDPlusPlus`): `l2` and `bias_l2`
    penalize the factor and bias rows each batch uses (per rating), `side_l2` the implicit and attribute
    tables. The recommendation task fills in the sizes and the data's constants."""
    return Sequential([
        layers.SVDPlusPlus(num_users, num_items, factors, global_mean=global_mean,
                           implicit_interactions=implicit_interactions, user_attributes=user_attributes,
                           user_attributes_per_row=user_attributes_per_row, item_attributes=item_attributes,
                           item_attributes_per_row=item_attributes_per_row, factors_regularizer=_l2(l2),
                           bias_regularizer=_l2(bias_l2), side_regularizer=_l2(side_l2)),
    ], name="svdpp")


@register_model("neumf")
def neumf(num_users, num_items, factors=16, mlp_units=(64, 32, 16), dropout=0.0, l2=1e-6) -> Sequential:
    """NeuMF (GMF + MLP) for implicit feedback, ending in a sigmoid: the probability that a user interacts
    with an item."""
    return Sequential([
        layers.NeuMF(num_users, num_items, factors, tuple(mlp_units), dropout=dropout, embeddings_regularizer=_l2(l2)),
        layers.Activation("sigmoid"),
    ], name="neumf")
