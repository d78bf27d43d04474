import json
import subprocess
import sys

import numpy as np
import pytest

from ember.data.subword import SubwordTokenizer

CORPUS = ["the film is charming", "a charming and moving story", "the plot is dull and the actors are dull",
          "charming actors , moving plot !", "a dull , tedious film", "the story is tedious"] * 5
KINDS = ["bpe", "wordpiece"]


def adapted(kind, **kwargs):
    tokenizer = SubwordTokenizer(kind, **{"vocab_size": 200, **kwargs})
    tokenizer.adapt(CORPUS)
    return tokenizer


@pytest.mark.parametrize("kind", KINDS)
def test_ids_zero_and_one_are_padding_and_unknown(kind):
    tokenizer = adapted(kind, output_sequence_length=6)
    assert [tokenizer.tokenizer.token_to_id(token) for token in ("[PAD]", "[UNK]")] == [0, 1]
    ids = tokenizer.encode(["the film", "zzz film", "[PAD] [UNK]"])
    assert ids.dtype == np.int64 and ids.shape == (3, 6)
    np.testing.assert_array_equal(ids[0, 2:], 0)  # padded at the end
    assert ids[0, 0] > 1 and ids[0, 1] > 1 and ids[1, 0] == 1  # "z" was never seen: [UNK]
    assert (ids[2, :4] != 0).all()  # a text saying "[PAD]" is text, not padding


@pytest.mark.parametrize("kind", KINDS)
def test_frequent_words_are_one_token_and_rare_ones_are_pieces(kind):
    tokenizer = adapted(kind)
    assert tokenizer.tokens("Charming!") == (["charming</w>", "!</w>"] if kind == "bpe" else ["charming", "!"])
    assert len(tokenizer.tokens("charmingly")) > 1
    assert tokenizer.tokens("Café") == tokenizer.tokens("cafe")  # lowercase strips accents too
    assert 3 <= tokenizer.vocabulary_size() <= 200


def test_long_texts_are_cut_and_without_a_length_pad_to_the_longest():
    cut = adapted("bpe", output_sequence_length=3)
    np.testing.assert_array_equal(cut.encode(["the plot is dull and tedious"]),
                                  adapted("bpe").encode(["the plot is dull and tedious"])[:, :3])
    ids = adapted("bpe").encode(["the film", "the film is dull", ""])
    assert ids.shape == (3, 4) and (ids[2] == 0).all()
    assert cut.encode([]).shape == (0, 3)


def test_a_small_vocabulary_stays_within_vocab_size():
    for kind in KINDS:
        assert adapted(kind, vocab_size=60).vocabulary_size() == 60


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip_gives_identical_encodings(kind):
    tokenizer = adapted(kind, output_sequence_length=8, lowercase=False)
    config = json.loads(json.dumps(tokenizer.get_config()))  # JSON data, as stored in the model file
    clone = SubwordTokenizer.from_config(config)
    texts = ["The film is Charming", "a dull story about zebras", ""]
    np.testing.assert_array_equal(clone.encode(texts), tokenizer.encode(texts))
    assert clone.get_config() == tokenizer.get_config() and clone.tokens("The") != clone.tokens("the")


def test_training_gives_the_same_tokenizer_in_another_process():
    # tokenizers numbers "##e"/"e</w>" in hash order, which varies between processes (huggingface/tokenizers#1794)
    script = ("import sys, json; from ember.data.subword import SubwordTokenizer\n"
              "for kind in ('bpe', 'wordpiece'):\n"
              "    t = SubwordTokenizer(kind, vocab_size=120); t.adapt(json.loads(sys.argv[1]))\n"
              "    print(t.get_config()['tokenizer'])\n")
    result = subprocess.run([sys.executable, "-c", script, json.dumps(CORPUS)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [adapted(kind, vocab_size=120).get_config()["tokenizer"] for kind in KINDS]


def test_mistakes_are_clear_errors():
    with pytest.raises(ValueError, match="kind must be one of bpe, wordpiece, got 'unigram'"):
        SubwordTokenizer("unigram")
    with pytest.raises(ValueError, match="call adapt"):
        SubwordTokenizer("bpe").encode(["a film"])
    with pytest.raises(ValueError, match="vocab_size 20 is too small .* at least"):
        adapted("wordpiece", vocab_size=20)
    with pytest.raises(ValueError, match="not a valid `tokenizers` JSON"):
        SubwordTokenizer.from_config({"kind": "bpe", "tokenizer": "{not json"})


TEXTS = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee, nicht wahr?", "Das Mädchen's Buch (rot)."] * 4


def test_a_reversible_tokenizer_gives_back_the_text_exactly():
    tokenizer = SubwordTokenizer("bpe", vocab_size=120, lowercase=False, reversible=True)
    tokenizer.adapt(TEXTS)
    ids = tokenizer.encode(TEXTS[:3])
    assert tokenizer.decode(ids) == TEXTS[:3]
    assert tokenizer.tokens("Ein Mann.")[:2] == ["\u2581Ein", "\u2581Mann"] and tokenizer.tokens("Ein Mann.")[-1] == "."
    again = SubwordTokenizer.from_config(json.loads(json.dumps(tokenizer.get_config())))
    assert again.decode(again.encode(TEXTS[:3])) == TEXTS[:3]


def test_special_tokens_take_the_ids_after_padding_and_unknown_and_decode_to_nothing():
    tokenizer = SubwordTokenizer("bpe", vocab_size=120, lowercase=False, reversible=True,
                                 special_tokens=["[BOS]", "[EOS]"])
    tokenizer.adapt(TEXTS)
    assert [tokenizer.token_id(t) for t in ("[PAD]", "[UNK]", "[BOS]", "[EOS]")] == [0, 1, 2, 3]
    assert not set(tokenizer.encode(["[BOS] Mann"])[0].tolist()) & {2, 3}  # text saying "[BOS]" is text
    ids = [i for i in tokenizer.encode(["Mann ☃ fährt"])[0].tolist() if i]
    assert 1 in ids  # the snowman was never seen: [UNK], dropped on decoding
    assert tokenizer.decode([[2, *ids, 3, 0, 0]]) == ["Mann  fährt"]
    assert tokenizer.decode(np.zeros((2, 3), dtype=np.int64)) == ["", ""]
    with pytest.raises(ValueError, match="special_tokens"):
        SubwordTokenizer("bpe", special_tokens=["[PAD]"])
    with pytest.raises(ValueError, match="reversible=True works with kind 'bpe'"):
        SubwordTokenizer("wordpiece", reversible=True)
    with pytest.raises(ValueError, match="too small"):
        SubwordTokenizer("bpe", vocab_size=10, reversible=True).adapt(TEXTS)
