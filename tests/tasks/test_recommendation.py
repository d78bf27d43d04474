"""The recommendation task on MovieLens-100k: configs, metrics, `ember recommend`, and its errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ember.tasks import runner
from ember.tasks.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
MF, NCF = ROOT / "configs" / "ml100k_mf.yaml", ROOT / "configs" / "ml100k_ncf.yaml"


def ember(*args):
    env = {**os.environ, "EMBER_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ember.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def mf_run(tmp_path_factory):
    if not os.environ.get("EMBER_DATA"):
        pytest.skip("needs the real datasets: set EMBER_DATA (CI uses ../shared/data)")
    return runner.train(MF, out=tmp_path_factory.mktemp("runs") / "mf", quiet=True)


@pytest.mark.data
def test_mf_config_predicts_u1_ratings(mf_run):
    """Guard below the measured 0.9220 (the issue's target, 0.91, is not met: see configs/ml100k_mf.yaml)."""
    metrics = json.loads((mf_run / "metrics.json").read_text())
    assert metrics["test_samples"] == 20000
    assert metrics["test_rmse"] <= 0.93 and metrics["test_mae"] <= 0.74
    assert "## Error by true rating" in (mf_run / "report.md").read_text()


@pytest.mark.data
def test_recommend_excludes_rated_movies_and_falls_back_to_popular(mf_run):
    shown = ember("recommend", str(mf_run / "model.ember"), "--user", "1", "-k", "5", "--json")
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert result["known"] and len(result["items"]) == 5
    from ember import datasets
    (x_train, _), _ = datasets.movielens.load_data("u1")
    rated = set(x_train[x_train[:, 0] == 1, 1].tolist())
    assert not rated & {item["item"] for item in result["items"]}
    assert all(1 <= item["score"] <= 6 for item in result["items"])
    unknown = ember("recommend", str(mf_run / "model.ember"), "--user", "99999", "-k", "3")
    assert unknown.returncode == 0
    lines = unknown.stdout.splitlines()
    assert "not in the training data" in lines[0] and lines[1] == "  1. Star Wars (1977)" and len(lines) == 4


@pytest.mark.data
def test_evaluate_reproduces_the_runs_metrics(mf_run):
    evaluated = ember("evaluate", str(mf_run))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "largest difference from" in evaluated.stdout and evaluated.stdout.strip().endswith(" 0")


def test_recommend_on_a_classifier_is_a_clear_error(tmp_path):
    from ember import layers, models
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    model.metadata = {"task": "image_classification"}
    model.save(tmp_path / "clf.ember")
    result = ember("recommend", str(tmp_path / "clf.ember"), "--user", "1")
    assert result.returncode == 2 and "not a recommender" in result.stderr and "Traceback" not in result.stderr


def test_implicit_feedback_refuses_a_validation_split():
    with pytest.raises(ConfigError, match="validation_split"):
        load_config(NCF, overrides=["data.validation_split=0.1"])
    with pytest.raises(ConfigError, match="data.feedback"):
        load_config(MF, overrides=["data.feedback=ratings"])


@pytest.mark.slow
def test_ncf_config_ranks_held_out_interactions(tmp_path, ember_data):
    """The issue's targets; measured HR@10 0.680 / NDCG@10 0.395 on seed 0 (0.667-0.682 / 0.389-0.395 over
    seeds 0-3; 943 users, so one user is 0.001 of HR)."""
    run = runner.train(NCF, out=tmp_path / "ncf", quiet=True)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_users"] == 943
    assert metrics["test_hr@10"] >= 0.65 and metrics["test_ndcg@10"] >= 0.38
    assert metrics["test_recall@10"] > 0.05
