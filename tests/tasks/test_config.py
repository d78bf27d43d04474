import pytest

from ember.tasks import config as config_lib
from ember.tasks.config import ConfigError, Schedule

BASE = """\
task: image_classification
data:
  dataset: digits
  image_size: [28, 28]
model:
  name: seed_cnn
train:
  epochs: 3
"""


@pytest.fixture
def write(tmp_path):
    def write(text, name="run.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


def test_defaults_are_filled_in(write):
    config = config_lib.load_config(write(BASE))
    assert config.train.epochs == 3 and config.train.batch_size == 32 and config.train.optimizer == "adam"
    assert config.data.validation_split == 0.1 and config.callbacks.checkpoints.save_best
    shown = config_lib.to_yaml(config)
    assert shown.splitlines()[0] == "task: image_classification"
    assert shown.index("data:") < shown.index("model:") < shown.index("train:") < shown.index("output:")
    assert config_lib.config_from_dict(__import__("yaml").safe_load(shown)) == config  # round trip


def test_overrides_parse_values_as_yaml(write):
    config = config_lib.load_config(write(BASE), ["train.epochs=7", "train.lr=1e-2", "data.image_size=[32, 32]",
                                                  "train.schedule=cosine", "callbacks.early_stopping.patience=4"])
    assert config.train.epochs == 7 and config.train.lr == 0.01 and config.data.image_size == [32, 32]
    assert config.train.schedule.name == "cosine" and config.callbacks.early_stopping.patience == 4


@pytest.mark.parametrize("text, message", [
    (BASE.replace("epochs: 3", "epoch: 3"), "run.yaml: unknown key 'train.epoch' (did you mean 'epochs'?)"),
    (BASE + "callbacks:\n  early_stoping: {patience: 2}\n",
     "unknown key 'callbacks.early_stoping' (did you mean 'early_stopping'?)"),
    (BASE.replace("epochs: 3", "epochs: three"), "train.epochs: input should be a valid integer (got 'three')"),
    (BASE.replace("epochs: 3", "epochs: 2.5"), "train.epochs: input should be a valid integer (got 2.5)"),
    (BASE.replace("epochs: 3", "epochs: true"), "train.epochs: input should be a valid integer (got True)"),
    (BASE.replace("epochs: 3", "epochs: 0"), "train.epochs: input should be greater than or equal to 1 (got 0)"),
    (BASE.replace("epochs: 3", "optimizer: adma"), "unknown optimizer 'adma' (did you mean 'adam'?)"),
    (BASE.replace("seed_cnn", "seed_cn"), "unknown model 'seed_cn' (did you mean 'seed_cnn'?)"),
    (BASE.replace("dataset: digits", "dataset: cifar"), "data.dataset: input should be 'mnist', 'fashion_mnist' or"),
    (BASE.replace("dataset: digits", "folder: imgs\n  npz: x.npz"), "set exactly one of data.dataset, data.folder"),
    (BASE.replace("image_classification", "image_clasification"),
     "task: unknown task 'image_clasification' (did you mean 'image_classification'?)"),
    (BASE.replace("task: image_classification\n", ""), "missing key 'task'"),
    (BASE.replace("  dataset: digits\n", "").replace("  image_size: [28, 28]\n", "").replace("data:\n", ""),
     "missing key 'data'"),
    (BASE + "output: {plots: [}\n", "YAML syntax error at line 9"),
    ("- just\n- a list\n", "a config is a mapping"),
    ("", "the config is empty"),
])
def test_bad_configs_name_the_problem(write, text, message):
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(write(text))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_override_is_an_error(write):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        config_lib.load_config(write(BASE), ["train.epochs"])
    with pytest.raises(ConfigError, match="train.epochs is not a section"):
        config_lib.load_config(write(BASE), ["train.epochs.x=1"])
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        config_lib.load_config(write(BASE), ["trian.epochs=1"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such config file"):
        config_lib.load_config(tmp_path / "nope.yaml")


def test_schedules():
    lrs = [Schedule(name="cosine").factor(e, 5, 1e-3) for e in range(5)]
    assert lrs[0] == pytest.approx(1e-3) and all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] > 0
    assert [Schedule(name="step", step_size=2, gamma=0.5).factor(e, 6, 1.0) for e in range(5)] == [1, 1, .5, .5, .25]
    assert Schedule(name="exponential", gamma=0.9).factor(2, 5, 1.0) == pytest.approx(0.81)
    warm = Schedule(name="cosine", warmup_epochs=2)
    assert warm.factor(0, 10, 1.0) == pytest.approx(0.1) and warm.factor(2, 10, 1.0) == pytest.approx(1.0)
    bert = Schedule(name="linear", warmup_steps=10)  # BERT's fine-tuning: warm up, then linearly to zero
    steps = [bert.at_step(s, 50, 2, 1.0) for s in (0, 9, 10, 55, 99)]
    assert steps == pytest.approx([0.1, 1.0, 1.0, 0.5, 1 / 90])


def test_duplicate_keys_are_refused(write):
    with pytest.raises(ConfigError, match="key 'epochs' appears twice"):
        config_lib.load_config(write(BASE + "  epochs: 4\n"))


def test_a_bad_override_is_blamed_on_the_override(write):
    with pytest.raises(ConfigError, match=r"^--set train.epochs: train.epochs: input should be a valid integer"):
        config_lib.load_config(write(BASE), ["train.epochs=lots"])


def test_union_errors_name_the_key_only(write):
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(write(BASE.replace("  name: seed_cnn", "  layers: [3]")))
    assert "model.layers[0]" in str(error.value) and ".str" not in str(error.value)
