"""The text_classification task end to end on a small labelled TSV; SST-2 itself is a slow data test."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ember import layers, models
from ember.errors import ModelFileError
from ember.tasks import runner, text_classification
from ember.tasks.config import ConfigError
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
GOOD = ["great", "wonderful", "charming", "moving", "superb"]
BAD = ["dull", "awful", "tedious", "bland", "boring"]
FILLER = ["the", "film", "is", "a", "story", "with", "actors", "and", "plot"]


def ember(*args, env=None):
    if env is None:
        return run_cli(*args)
    env = {**os.environ, "EMBER_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, "-m", "ember.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reviews")
    rng = np.random.default_rng(0)
    rows = ["review\tmood"]
    for i in range(400):
        mood = "happy" if i % 2 else "sad"
        words = list(rng.choice(FILLER, rng.integers(3, 12)))
        words.insert(rng.integers(0, len(words)), rng.choice(GOOD if mood == "happy" else BAD))
        rows.append(" ".join(words) + f"\t{mood}")
    (folder / "reviews.tsv").write_text("\n".join(rows) + "\n")
    config = folder / "reviews.yaml"
    config.write_text(f"""\
task: text_classification
data: {{train_file: {folder / 'reviews.tsv'}, text_column: review, label_column: mood, sequence_length: 16}}
model:
  layers:
    - Embedding: {{input_dim: 64, output_dim: 16, mask_zero: true}}
    - Bidirectional: {{layer: {{class_name: LSTM, config: {{units: 8}}}}}}
    - Dense: {{units: 2}}
train: {{epochs: 8, batch_size: 16, seed: 0}}
""")
    return folder


def test_text_file_trains_evaluates_and_predicts_raw_text(tmp_path, reviews):
    run = tmp_path / "run"
    result = ember("train", str(reviews / "reviews.yaml"), "--out", str(run))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_samples"] == 80 and set(metrics["per_class"]) == {"happy", "sad"}
    assert metrics["test_accuracy"] >= 0.9, metrics
    assert "## Highest-loss test texts" in (run / "report.md").read_text()
    assert (run / "plots" / "confusion_matrix.png").is_file()
    evaluated = ember("evaluate", str(run), "--json")
    assert runner.compare(json.loads(evaluated.stdout), run / "metrics.json") <= 1e-6
    predicted = ember("predict", str(run / "model.ember"), "the film is superb", "a dull plot", "--json")
    assert predicted.returncode == 0, predicted.stderr
    labels = [r["predictions"][0]["label"] for r in json.loads(predicted.stdout)]
    assert labels == ["happy", "sad"]


def test_subword_tokenizer_trains_and_predicts_raw_text(tmp_path, reviews):
    config = tmp_path / "bpe.yaml"
    config.write_text(f"""\
task: text_classification
data: {{train_file: {reviews / 'reviews.tsv'}, text_column: review, label_column: mood, tokenizer: bpe,
        max_tokens: 96, sequence_length: 24}}
model:
  layers:
    - Embedding: {{input_dim: 96, output_dim: 16}}
    - GlobalAveragePooling1D: {{}}
    - Dense: {{units: 2}}
train: {{epochs: 6, batch_size: 16, lr: 0.03, seed: 0}}
output: {{plots: false}}
""")
    run = tmp_path / "run"
    result = ember("train", str(config), "--out", str(run))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert json.loads((run / "metrics.json").read_text())["test_accuracy"] >= 0.9
    with zipfile.ZipFile(run / "model.ember") as archive:
        vectorizer = json.loads(archive.read("config.json"))["metadata"]["preprocessing"]["vectorizer"]
    assert vectorizer["class_name"] == "SubwordTokenizer" and vectorizer["config"]["kind"] == "bpe"
    predicted = ember("predict", str(run / "model.ember"), "The film is SUPERB!", "a dull plot", "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert [r["predictions"][0]["label"] for r in json.loads(predicted.stdout)] == ["happy", "sad"]


def test_a_subword_vocabulary_too_small_for_the_alphabet_names_the_key(reviews):
    with pytest.raises(ConfigError, match="data.max_tokens: SubwordTokenizer vocab_size 10 is too small"):
        text_classification.load_data(tokenizer="wordpiece", max_tokens=10, train_file=str(reviews / "reviews.tsv"),
                                      text_column="review", label_column="mood")


def _saved_with_vectorizer_metadata(path, vectorizer_entry):
    model = models.Sequential([layers.Input(shape=(4,), dtype="int64"), layers.Embedding(8, 4),
                               layers.GlobalAveragePooling1D(), layers.Dense(2, activation="softmax")])
    model.metadata = {"task": "text_classification", "class_names": ["sad", "happy"],
                      "preprocessing": {"vectorizer": vectorizer_entry}}
    model.save(path)
    return path


def test_model_files_with_a_bare_vectorizer_config_still_load(tmp_path):
    vectorize = layers.TextVectorization(max_tokens=8, output_sequence_length=4)
    vectorize.adapt(["the film is superb", "a dull plot"])
    path = _saved_with_vectorizer_metadata(tmp_path / "old.ember", vectorize.get_config())  # the form before subwords
    [result] = runner.predict(path, ["the film is superb"])
    assert {p["label"] for p in result["predictions"]} == {"sad", "happy"}


def test_an_unknown_vectorizer_class_is_refused(tmp_path):
    path = _saved_with_vectorizer_metadata(tmp_path / "odd.ember", {"class_name": "os.system", "config": {}})
    with pytest.raises(ModelFileError, match="vectorizer 'os.system' is not one of TextVectorization, "
                                             "SubwordTokenizer"):
        runner.predict(path, ["a film"])


def test_text_config_mistakes_are_one_line(tmp_path, reviews):
    config = tmp_path / "bad.yaml"
    config.write_text((reviews / "reviews.yaml").read_text().replace("label_column: mood", "label_column: mod"))
    result = ember("train", str(config), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "needs columns 'review' and 'mod'" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


# Issue 4 asks 0.82 (BiLSTM) and 0.80 (Transformer); with seed 0 they measure 0.8303 and 0.8050 (about 105 s and
# 90 s on 2 cores; the BiLSTM gives 0.813 and 0.829 with seeds 1 and 2). The guards sit below those figures: other
# CPUs round differently, and 872 texts move in steps of 0.0011.
@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("config, guard", [("sst2_bilstm.yaml", 0.81), ("sst2_transformer.yaml", 0.79)])
def test_sst2_configs_guard_their_dev_accuracy(tmp_path, ember_data, config, guard):
    run = tmp_path / "sst2"
    result = ember("train", str(ROOT / "configs" / config), "--out", str(run), env={"EMBER_DATA": str(ember_data)})
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    assert json.loads((run / "metrics.json").read_text())["test_accuracy"] >= guard
