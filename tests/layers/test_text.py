import numpy as np
import pytest

from ember import layers


def test_adapt_orders_by_frequency_and_reserves_padding_and_oov():
    vectorize = layers.TextVectorization(max_tokens=5, output_sequence_length=4)
    vectorize.adapt(["the cat sat", "The cat ran!", "the dog"])
    assert vectorize.get_vocabulary() == ["", "[UNK]", "the", "cat", "sat"]
    ids = vectorize(["The cat flew", "cat"]).numpy()
    np.testing.assert_array_equal(ids, [[2, 3, 1, 0], [3, 0, 0, 0]])


def test_vocabulary_round_trips_through_the_config():
    vectorize = layers.TextVectorization(output_sequence_length=3)
    vectorize.adapt(["a b c", "b c", "c"])
    clone = layers.TextVectorization.from_config(vectorize.get_config())
    np.testing.assert_array_equal(clone.encode(["c b a z"]), vectorize.encode(["c b a z"]))


def test_unsupported_modes_are_clear_errors():
    with pytest.raises(ValueError, match="output_mode"):
        layers.TextVectorization(output_mode="tf_idf")
