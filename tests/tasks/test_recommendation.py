"""The recommendation task on MovieLens-100k: configs, metrics, `ember recommend`, and its errors."""
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ember.data.interactions import NegativeSampling, ranking_candidates
from ember.tasks import recommendation, runner
from ember.tasks.config import ConfigError, load_config
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
MF, NCF = ROOT / "configs" / "ml100k_mf.yaml", ROOT / "configs" / "ml100k_ncf.yaml"


def ember(*args):
    return run_cli(*args)


@pytest.fixture(scope="module")
def mf_run(request, tmp_path_factory):
    """The MF config as written with --runslow (the issue's figure), else 3 of its epochs (the pipeline)."""
    if not os.environ.get("EMBER_DATA"):
        pytest.skip("needs the real datasets: set EMBER_DATA (CI uses ../shared/data)")
    overrides = () if request.config.getoption("--runslow") else ("train.epochs=3",)
    return runner.train(MF, overrides=overrides, out=tmp_path_factory.mktemp("runs") / "mf", quiet=True)


@pytest.mark.data
def test_mf_config_predicts_u1_ratings(mf_run, request):
    """The issue's target with --runslow: RMSE <= 0.91 on u1.test (measured 0.9037-0.9075 over four seeds)."""
    metrics = json.loads((mf_run / "metrics.json").read_text())
    assert metrics["test_samples"] == 20000
    if request.config.getoption("--runslow"):
        assert metrics["test_rmse"] <= 0.91 and metrics["test_mae"] <= 0.72
    else:  # three epochs: 0.934
        assert metrics["test_rmse"] <= 0.95
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


def tiny_implicit() -> recommendation.Interactions:
    """12 users who each like one of two item groups: a model that learns the groups ranks well."""
    rng = np.random.default_rng(0)
    pairs = np.array([[u, i] for u in range(1, 13) for i in rng.choice(np.arange(1, 11) + (10 if u % 2 else 0),
                                                                        6, replace=False)])
    held_out = np.arange(5, len(pairs), 6)
    train = np.setdiff1d(np.arange(len(pairs)), held_out)
    x_test = ranking_candidates(pairs, held_out, num_items=41, negatives=9, seed=0)
    return recommendation.Interactions("implicit", pairs[train], None, x_test, None, [f"item {i}" for i in range(41)],
                                       list(range(1, 11)), 13, 41, "tiny", {})


def test_the_implicit_pipeline_on_synthetic_users():
    data = tiny_implicit()
    model = recommendation.build_model(data, name="neumf", args={"factors": 4, "mlp_units": [8, 4]})
    assert model.output_activation() == "sigmoid"
    model.compile("adam", "binary_crossentropy")
    model.fit(NegativeSampling(data.x_train, data.num_items, negatives=4, seed=0), epochs=30, batch_size=32,
              verbose=0)
    metrics, details = recommendation.TASK.evaluate(model, data, 32)
    assert metrics["test_users"] == 12 and len(details["ranks"]) == 12
    assert metrics["test_hr@10"] == 1.0  # 10 candidates: every held-out item is in the top 10
    assert 0 < metrics["test_ndcg@10"] <= 1 and 0 <= metrics["test_recall@10"] <= 1
    model.metadata = recommendation.TASK.metadata(data)
    result = recommendation.recommend(model, 2, k=3)
    assert result["known"] and len(result["items"]) == 3
    assert not {item["item"] for item in result["items"]} & set(data.x_train[data.x_train[:, 0] == 2, 1].tolist())
    assert all(0 < item["score"] < 1 for item in result["items"])


def test_explicit_feedback_refuses_a_model_ending_in_a_sigmoid():
    data = dataclasses.replace(tiny_implicit(), feedback="explicit", y_train=np.full(60, 4.0, dtype=np.float32))
    with pytest.raises(ConfigError, match="cannot predict 1-5 ratings"):
        recommendation.build_model(data, name="neumf")


@pytest.mark.parametrize("broken", [{"popular": [5000]}, {"seen": {"1": [-3]}}, {"titles": ["a"] * 100}])
def test_corrupt_recommendation_metadata_is_a_one_line_error(tmp_path, broken):
    data = tiny_implicit()
    model = recommendation.build_model(data, name="matrix_factorization", args={"factors": 2})
    model.metadata = {**recommendation.TASK.metadata(data), **broken}
    model.save(tmp_path / "rec.ember")
    result = ember("recommend", str(tmp_path / "rec.ember"), "--user", "1")
    assert result.returncode == 2 and "rec.ember" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_ncf_config_ranks_held_out_interactions(tmp_path, ember_data):
    """The issue's targets; measured HR@10 0.679 / NDCG@10 0.392 on seed 0 (0.674-0.679 / 0.390-0.397 over
    seeds 0-3; 943 users, so one user is 0.001 of HR)."""
    run = runner.train(NCF, out=tmp_path / "ncf", quiet=True)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_users"] == 943
    assert metrics["test_hr@10"] >= 0.65 and metrics["test_ndcg@10"] >= 0.38
    assert metrics["test_recall@10"] > 0.05


@pytest.mark.data
def test_svdpp_side_information_from_the_movielens_files(ember_data):
    data = recommendation.load_data(split="u1")
    side = recommendation.side_information(data)
    assert side["interactions"].shape == (80000, 2)
    # user 1: 24 years old (decade 2 -> id 3), male (id 9), technician (sorted occupation index 19 -> id 29)
    assert side["user_attributes"][1].tolist() == [3, 9, 29] and side["user_attributes"][0].tolist() == [0, 0, 0]
    # Toy Story (1995): Animation, Children's, Comedy (genre ids 3, 4, 5 of 19 sorted names), then 1995's bin
    toy_story = side["item_attributes"][1]
    assert toy_story[:3].tolist() == [3, 4, 5] and toy_story[3] == 1 + 19 + (1995 - 1920) // 5
    assert side["item_attributes"].max() < side["item_attribute_count"]
    assert side["user_attributes"].max() < side["user_attribute_count"]
