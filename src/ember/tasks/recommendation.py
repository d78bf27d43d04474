"""recommendation: users and items in, ratings or rankings out (MovieLens-100k).

Two kinds of feedback:
  explicit  predict 1-5 ratings on a predefined split (u1, ua): `test_rmse`, `test_mae`.
  implicit  every rating is an interaction; each user's latest one is held out and ranked among 99 sampled
            items the user never rated (NCF's protocol): `test_hr@10`, `test_ndcg@10`, plus `test_recall@10`
            ranked against every item the user did not train on.

The model file keeps the titles, what each user already rated and the most popular items, so that
`ember recommend MODEL --user 42` works offline and an unknown user gets popular items.
"""
import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from ember import datasets
from ember.layers import Activation
from ember.layers.base import inference_pass
from ember.data.interactions import NegativeSampling, leave_one_out, ranking_candidates
from ember.errors import DatasetError, EmberError, ModelFileError
from ember.evaluation import ranking
from ember.tasks.config import ConfigError, RunConfig, Section
from ember.tasks.model_specs import ModelSpec, create_registered

RATING_SCALE = (1.0, 5.0)
K = 10
POPULAR = 100  # most-rated items kept in the model file for users it has not seen
YEARS = (1920, 1999)  # SVD++'s release-year attribute: 5-year bins, earlier and later years clipped
YEAR_BINS = (YEARS[1] - YEARS[0]) // 5 + 1


class Data(Section):
    dataset: Literal["movielens"] = "movielens"
    feedback: Literal["explicit", "implicit"] = Field(
        "explicit", description="explicit: predict ratings on `split`; implicit: rank held-out interactions")
    split: Literal["u1", "ua"] = Field("u1", description="explicit: the predefined MovieLens split")
    negatives: int = Field(4, ge=1, description="implicit: unobserved items sampled per interaction, each epoch")
    test_negatives: int = Field(99, ge=1, description="implicit: sampled items each held-out one is ranked among")
    validation_split: float = Field(0.05, ge=0, lt=1, description="explicit: random fraction of the training "
                                                                   "ratings; implicit trains without one")
    split_seed: int = Field(0, ge=0, description="shuffles the validation split and draws the test negatives")

    @model_validator(mode="after")
    def _implicit_without_validation(self):
        if self.feedback == "implicit" and self.validation_split:
            raise ValueError("data.validation_split: implicit feedback trains on sampled negatives without a "
                             "validation split; set it to 0")
        return self


class Config(RunConfig):
    task: Literal["recommendation"]
    data: Data = Data()
    model: ModelSpec = ModelSpec(name="matrix_factorization")


@dataclasses.dataclass
class Interactions:
    """Training pairs and what the chosen protocol tests on. Item and user ids are MovieLens's own."""
    feedback: str
    x_train: np.ndarray                  # (N, 2) user, item
    y_train: np.ndarray | None           # ratings (explicit); None (implicit: NegativeSampling labels)
    x_test: np.ndarray                   # explicit: (M, 2) pairs; implicit: (users, 1 + test_negatives, 2)
    y_test: np.ndarray | None            # explicit: ratings
    titles: list[str]
    popular: list[int]
    num_users: int
    num_items: int
    source: str
    protocol: dict  # the data options that rebuild this test set (`ember evaluate MODEL --data movielens`)

    def seen(self) -> dict[int, list[int]]:
        """The items each user trained on."""
        order = np.lexsort((self.x_train[:, 1], self.x_train[:, 0]))
        users, items = self.x_train[order, 0], self.x_train[order, 1]
        starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
        return {int(users[s]): items[s:e].tolist() for s, e in zip(starts, np.r_[starts[1:], len(users)])}


def _popular(items: np.ndarray, num_items: int) -> list[int]:
    counts = np.bincount(items, minlength=num_items)
    return np.argsort(-counts, kind="stable")[:POPULAR].tolist()


def _explicit(split: str, split_seed: int) -> tuple:
    (x_train, y_train), (x_test, y_test) = datasets.movielens.load_data(split)
    order = np.random.default_rng(split_seed).permutation(len(x_train))  # validation_split takes the tail
    return x_train[order], y_train[order], x_test, y_test, f"dataset movielens ({split} split, explicit ratings)"


def _implicit(test_negatives: int, split_seed: int) -> tuple:
    ratings = datasets.movielens.load_ratings()
    pairs = np.stack([ratings["user"], ratings["item"]], axis=1)
    train, test = leave_one_out(ratings["user"], ratings["timestamp"])
    x_test = ranking_candidates(pairs, test, datasets.movielens.NUM_ITEMS + 1, negatives=test_negatives,
                                seed=split_seed)
    source = (f"dataset movielens (implicit: latest interaction of each of {len(test):,} users held out, "
              f"ranked among {test_negatives} unrated items)")
    return pairs[train], None, x_test, None, source


def load_data(*, feedback="explicit", split="u1", test_negatives=99, split_seed=0) -> Interactions:
    protocol = {"feedback": feedback, "split": split, "test_negatives": test_negatives, "split_seed": split_seed}
    if feedback == "explicit":
        x_train, y_train, x_test, y_test, source = _explicit(split, split_seed)
    else:
        x_train, y_train, x_test, y_test, source = _implicit(test_negatives, split_seed)
    num_items = datasets.movielens.NUM_ITEMS + 1
    return Interactions(feedback, x_train, y_train, x_test, y_test, datasets.movielens.load_items()["title"].tolist(),
                        _popular(x_train[:, 1], num_items), datasets.movielens.NUM_USERS + 1, num_items, source,
                        protocol)


def side_information(data: Interactions) -> dict:
    """What SVD++ knows beside the ratings, as `layers.SVDPlusPlus.set_side_information` takes it: the
    training pairs (which movies each user rated, not how; the validation tail included), each user's age
    decade, gender and occupation, and each movie's genres and release years (5-year bins). Attribute id 0 is
    "none"."""
    users, items = datasets.movielens.load_users(), datasets.movielens.load_items()
    occupations = sorted(set(users["occupation"][1:]))
    decades, genders = 7, 2  # ages 0-9, 10-19, ..., 60 and over; F, M
    user_ids = np.stack([1 + np.minimum(users["age"] // 10, decades - 1), 1 + decades + (users["gender"] == "M"),
                         1 + decades + genders + np.searchsorted(occupations, users["occupation"])], axis=1)
    user_ids[0] = 0  # row 0 is no user
    genres = sorted({genre for names in items["genres"] for genre in names})
    year_bin = np.where(items["year"] > 0, 1 + len(genres) + (np.clip(items["year"], *YEARS) - YEARS[0]) // 5, 0)
    per_row = 1 + max(len(names) for names in items["genres"])
    item_ids = np.zeros((data.num_items, per_row), dtype=np.int64)
    for item, names in enumerate(items["genres"]):
        item_ids[item, :len(names)] = [1 + genres.index(name) for name in names]
        item_ids[item, len(names)] = year_bin[item]
    return {"interactions": data.x_train, "user_attributes": user_ids.astype(np.int64), "item_attributes": item_ids,
            "user_attribute_count": 1 + decades + genders + len(occupations),
            "item_attribute_count": 1 + len(genres) + YEAR_BINS}


def build_model(data: Interactions, *, name=None, args=None, layers=None):
    """A registered recommender, given the table sizes (and for explicit feedback the mean rating; for SVD++
    the side information)."""
    if name is None:
        raise ConfigError("model.layers: a recommender is a registered model (model.name: matrix_factorization, "
                          "svdpp or neumf)")
    required = {"num_users": data.num_users, "num_items": data.num_items}
    explicit_models = ("matrix_factorization", "svdpp")
    if data.feedback == "explicit" and name in explicit_models and "global_mean" not in (args or {}):
        required["global_mean"] = float(data.y_train.mean())
    side = side_information(data) if name == "svdpp" else None
    if side is not None:
        required.update(implicit_interactions=len(side["interactions"]),
                        user_attributes=side["user_attribute_count"],
                        user_attributes_per_row=side["user_attributes"].shape[1],
                        item_attributes=side["item_attribute_count"],
                        item_attributes_per_row=side["item_attributes"].shape[1])
    model = create_registered(name, args, **required)
    model._set_input((2,), "int64")  # (user, item) ids
    model.build((None, 2))
    if side is not None:
        model.layers[0].set_side_information(interactions=side["interactions"], user_attributes=side["user_attributes"],
                                             item_attributes=side["item_attributes"])
    final = model.output_activation()
    if data.feedback == "implicit" and final != "sigmoid":
        model.add(Activation("sigmoid"))
    elif data.feedback == "explicit" and final not in (None, "linear"):
        raise ConfigError(f"model {name} ends in a {final!r} activation, which cannot predict 1-5 ratings; use "
                          "matrix_factorization or svdpp for explicit feedback (neumf is for implicit feedback)")
    return model


# -- scoring -----------------------------------------------------------------------------------------
@torch.inference_mode()
def score_pairs(model, pairs: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Scores of (..., 2) (user, item) pairs. A model ending in a sigmoid is scored on its logits: the ranking
    is the same, and probabilities near 1 would tie in float32."""
    model.eval()
    flat = torch.as_tensor(pairs.reshape(-1, 2), dtype=torch.long)
    forward = model.forward_logits if model.output_activation() == "sigmoid" else model
    with inference_pass():  # one pass: SVD++ sums its users' implicit vectors once
        scores = [forward(flat[i:i + batch_size].to(model.device)).float().cpu()
                  for i in range(0, len(flat), batch_size)]
    return torch.cat(scores).numpy().reshape(pairs.shape[:-1])


def score_items(model, users: np.ndarray, num_items: int) -> np.ndarray:
    """(users, num_items) scores of every item for each user (column 0, no item, scores -inf)."""
    items = np.arange(num_items)
    pairs = np.stack(np.broadcast_arrays(users[:, None], items[None, :]), axis=-1)
    scores = score_pairs(model, pairs)
    scores[:, 0] = -np.inf
    return scores


def _ranking_metrics(model, data: Interactions) -> tuple[dict, dict]:
    scores = score_pairs(model, data.x_test)
    hr, ndcg = ranking.hit_rate_and_ndcg(scores[:, 0], scores[:, 1:], K)
    users, held_out = data.x_test[:, 0, 0], data.x_test[:, 0, 1]
    exclude = np.zeros((len(users), data.num_items), dtype=bool)
    seen = data.seen()
    for row, user in enumerate(users):
        exclude[row, seen.get(int(user), [])] = True
    recall = ranking.full_ranking_recall(score_items(model, users, data.num_items), held_out, exclude, K)
    metrics = {f"test_hr@{K}": hr, f"test_ndcg@{K}": ndcg, f"test_recall@{K}": recall, "test_users": len(users)}
    return metrics, {"ranks": ranking.ranks(scores[:, 0], scores[:, 1:])}


def _rating_metrics(model, data: Interactions, batch_size: int) -> tuple[dict, dict]:
    predicted = np.clip(model.predict(data.x_test, batch_size=max(batch_size, 4096), verbose=0).reshape(-1),
                        *RATING_SCALE)
    error = predicted - data.y_test
    metrics = {"test_rmse": float(np.sqrt(np.mean(error ** 2))), "test_mae": float(np.mean(np.abs(error))),
               "test_samples": len(error)}
    return metrics, {"error": error}


# -- recommending ------------------------------------------------------------------------------------
def _recommendation_metadata(model, path: str) -> tuple[list[str], dict, list[int]]:
    """(titles, seen, popular) from the model file, checked so that a corrupt file is a one-line error."""
    meta = model.metadata
    titles, seen, popular = meta.get("titles"), meta.get("seen"), meta.get("popular")
    if not titles or seen is None or not popular:
        raise ModelFileError(f"{path}: the model file has no recommendation metadata (titles, rated items, popular "
                             "items): train it with `ember train`")

    def ids_ok(ids):
        return isinstance(ids, list) and all(isinstance(i, int) and 0 < i < len(titles) for i in ids)
    if (not isinstance(titles, list) or not all(isinstance(t, str) for t in titles) or not isinstance(seen, dict)
            or not ids_ok(popular) or not all(ids_ok(items) for items in seen.values())):
        raise ModelFileError(f"{path}: the model file's recommendation metadata is corrupt (item ids must index "
                             f"its {len(titles)} titles)")
    return titles, seen, popular


def recommend(model, user: int, k: int = 10, *, path: str = "model") -> dict:
    """The `k` best-scored items `user` has not rated: {"user", "known", "note", "items": [{item, title, score}]}."""
    titles, seen, popular = _recommendation_metadata(model, path)
    if str(user) not in seen:
        note = f"user {user} is not in the training data: showing the {k} most-rated movies"
        items = [{"item": i, "title": titles[i], "score": None} for i in popular[:k]]
        return {"user": user, "known": False, "note": note, "items": items}
    try:
        scores = score_items(model, np.array([user]), len(titles))[0]
    except (IndexError, RuntimeError) as e:
        raise ModelFileError(f"{path}: the model cannot score the file's {len(titles)} items for user {user} "
                             f"({str(e).splitlines()[0]})") from None
    if model.output_activation() == "sigmoid":
        scores = 1 / (1 + np.exp(-scores))  # shown as probabilities
    scores[seen[str(user)]] = -np.inf
    best = np.argsort(-scores, kind="stable")[:k]
    items = [{"item": int(i), "title": titles[i], "score": float(scores[i])} for i in best if np.isfinite(scores[i])]
    return {"user": user, "known": True, "note": None, "items": items}


# -- the task, as the runner calls it ---------------------------------------------------------------
class Recommendation:
    name = "recommendation"
    config_class = Config

    def loss_and_metrics(self, config: Config):
        if config.data.feedback == "explicit":
            return "mse", ["root_mean_squared_error", "mae"]
        return "binary_crossentropy", []

    def test_size(self, data: Interactions) -> int:
        return len(data.x_test)

    def load_data(self, config: Config) -> Interactions:
        return load_data(**config.data.model_dump(exclude={"validation_split", "dataset", "negatives"}))

    def build_model(self, config: Config, data: Interactions):
        return build_model(data, **config.model.model_dump())

    def fit_arrays(self, config: Config, data: Interactions):
        if data.feedback == "explicit":
            return data.x_train, data.y_train
        return NegativeSampling(data.x_train, data.num_items, negatives=config.data.negatives,
                                seed=config.train.seed), None

    def metadata(self, data: Interactions) -> dict:
        return {"task": self.name, "feedback": data.feedback, "protocol": data.protocol, "titles": data.titles,
                "popular": data.popular, "seen": {str(u): items for u, items in data.seen().items()}}

    def evaluation_data(self, model, data_arg: str) -> Interactions:
        if data_arg != "movielens":
            raise DatasetError(f"--data {data_arg}: a recommender is evaluated on the dataset 'movielens'")
        protocol = model.metadata.get("protocol")
        if not isinstance(protocol, dict) or protocol.get("feedback") not in ("explicit", "implicit"):
            raise DatasetError("the model file does not say which data it was trained on: train it with `ember train`")
        try:
            return load_data(**Data(**protocol, validation_split=0).model_dump(
                include={"feedback", "split", "test_negatives", "split_seed"}))
        except (TypeError, ValueError) as e:
            raise DatasetError(f"the model file's data protocol {protocol} is unusable: "
                               f"{str(e).splitlines()[0]}") from None

    def evaluate(self, model, data: Interactions, batch_size: int) -> tuple[dict, dict]:
        if data.feedback == "explicit":
            return _rating_metrics(model, data, batch_size)
        return _ranking_metrics(model, data)

    def summary_line(self, metrics: dict) -> str:
        if "test_rmse" in metrics:
            return (f"test RMSE {metrics['test_rmse']:.4f}, MAE {metrics['test_mae']:.4f} on "
                    f"{metrics['test_samples']:,} test ratings")
        return (f"test HR@{K} {metrics[f'test_hr@{K}']:.4f}, NDCG@{K} {metrics[f'test_ndcg@{K}']:.4f}, full-ranking "
                f"recall@{K} {metrics[f'test_recall@{K}']:.4f} over {metrics['test_users']:,} users")

    def report_sections(self, run_dir: Path, data: Interactions, metrics: dict, details: dict,
                        config: Config) -> list[str]:
        if data.feedback == "explicit":
            return [_error_by_rating(data.y_test, details["error"])]
        return [_rank_table(details["ranks"], config.data.test_negatives)]

    def predict(self, model, inputs, top_k: int = 3) -> list[dict]:
        raise EmberError("a recommender answers `ember recommend MODEL --user ID -k 10`, not `ember predict`")


def _error_by_rating(ratings: np.ndarray, error: np.ndarray) -> str:
    rows = "\n".join(f"| {int(r)} | {np.sum(ratings == r):,} | {np.sqrt(np.mean(error[ratings == r] ** 2)):.4f} | "
                     f"{np.mean(error[ratings == r]):+.4f} |" for r in np.unique(ratings))
    return ("## Error by true rating\n\nPredictions are clipped to 1-5. A positive mean error over-predicts.\n\n"
            f"| rating | test ratings | RMSE | mean error |\n|---|---|---|---|\n{rows}\n")


def _rank_table(ranks: np.ndarray, candidates: int) -> str:
    edges = [(lo, min(hi, candidates + 1)) for lo, hi in ((0, 1), (1, 5), (5, 10), (10, 20), (20, 50),
                                                        (50, candidates + 1)) if lo < candidates + 1]
    rows = "\n".join(f"| {lo + 1}-{hi} | {np.sum((ranks >= lo) & (ranks < hi)):,} | "
                     f"{np.mean((ranks >= lo) & (ranks < hi)):.3f} |" for lo, hi in edges)
    return (f"## Where the held-out item ranks\n\nEach user's latest interaction ranked among {candidates} "
            f"sampled items the user never rated (rank 1 is best).\n\n| rank | users | share |\n|---|---|---|\n"
            f"{rows}\n")


TASK = Recommendation()
