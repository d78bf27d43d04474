"""The bad-input corpus: each case is a broken file, config or argument handed to the CLI. Every one must give
exit code 2 and one line on stderr naming the file, key or value, no traceback, and leave every file that
was there untouched and nothing new behind.

The cases run through `ember.cli.main` in this process (a subprocess per case would cost minutes); two of
them also run as real processes, to check what a shell sees.
"""
import gzip
import json
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ember import cli, datasets, layers, models

ROOT = Path(__file__).resolve().parents[1]


# -- building blocks --------------------------------------------------------------------------------
def idx(array: np.ndarray, rank: int) -> bytes:
    header = bytes([0, 0, 0x08, rank]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def mnist_folder(tmp: Path, broken: str, data: bytes) -> Path:
    """$EMBER_DATA with a small MNIST whose `broken` file holds `data`."""
    folder = tmp / "data" / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(idx(rng.integers(0, 255, (20, 28, 28)), 3))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(idx(rng.integers(0, 10, 20), 1))
    (folder / broken).write_bytes(data)
    return tmp / "data"


def config(tmp: Path, text: str, name="run.yaml") -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def npz_config(tmp: Path, **arrays) -> str:
    np.savez(tmp / "data.npz", **arrays)
    return config(tmp, f"task: image_classification\ndata: {{npz: {tmp / 'data.npz'}}}\ntrain: {{epochs: 1}}\n")


def png(tmp: Path, name: str, value: int = 128) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def image_folder(tmp: Path, corrupt: bool) -> str:
    for label in ("cats", "dogs"):
        for i in range(6):
            png(tmp / "images", f"{label}/{i}.png", 40 * i)
    if corrupt:
        (tmp / "images" / "dogs" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return config(tmp, f"task: image_classification\ndata: {{folder: {tmp / 'images'}}}\ntrain: {{epochs: 1}}\n")


def text_config(tmp: Path, content: bytes) -> str:
    (tmp / "reviews.csv").write_bytes(content)
    return config(tmp, f"task: text_classification\ndata: {{train_file: {tmp / 'reviews.csv'}}}\n"
                       "train: {epochs: 1}\n")


def model_file(tmp: Path, shared: Path, name="model.ember", edit=None) -> str:
    """A copy of the shared small image model, optionally with its config.json edited."""
    path = tmp / name
    if edit is None:
        path.write_bytes(shared.read_bytes())
        return str(path)
    with zipfile.ZipFile(shared) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            target.writestr(item, json.dumps(edit(json.loads(data))) if item == "config.json" else data)
    return str(path)


# -- the corpus: name -> (argv builder, text the one line must hold) ---------------------------------
def _idx_truncated(t, m):
    good = idx(np.zeros((20, 28, 28)), 3)
    truncated = gzip.compress(gzip.decompress(good)[:500])
    return ["train", str(ROOT / "configs" / "mnist_cnn.yaml"), "--out", str(t / "run")], \
        {"EMBER_DATA": str(mnist_folder(t, "train-images-idx3-ubyte.gz", truncated))}


def _idx_magic(t, m):
    wrong = gzip.compress(b"\x00\x00\x08\x07" + bytes(64))
    return ["train", str(ROOT / "configs" / "mnist_cnn.yaml"), "--out", str(t / "run")], \
        {"EMBER_DATA": str(mnist_folder(t, "t10k-labels-idx1-ubyte.gz", wrong))}


def _idx_not_gzip(t, m):
    return ["train", str(ROOT / "configs" / "mnist_cnn.yaml"), "--out", str(t / "run")], \
        {"EMBER_DATA": str(mnist_folder(t, "train-labels-idx1-ubyte.gz", b"plain text, not gzip"))}


CASES = {
    "truncated IDX": (_idx_truncated, "train-images-idx3-ubyte.gz"),
    "IDX with a wrong magic number": (_idx_magic, "t10k-labels-idx1-ubyte.gz"),
    "IDX that is not gzip": (_idx_not_gzip, "train-labels-idx1-ubyte.gz"),
    "corrupt PNG in a training folder": (lambda t, m: ["train", image_folder(t, corrupt=True), "--out",
                                                       str(t / "run")], "3.png"),
    "corrupt PNG, over an earlier run": (lambda t, m: ["train", image_folder(t, corrupt=True), "--out",
                                                       _earlier_run(t), "--overwrite"], "3.png"),
    "corrupt PNG to predict": (lambda t, m: ["predict", model_file(t, m), str(_write(t / "x.png", b"\x89PNG junk"))],
                               "x.png"),
    "non-UTF-8 text": (lambda t, m: ["train", text_config(t, "sentence,label\ncaf\xe9 cr\xe8me,1\n".encode("latin-1")
                                                            * 1), "--out", str(t / "run")], "reviews.csv"),
    "empty CSV": (lambda t, m: ["train", text_config(t, b""), "--out", str(t / "run")], "reviews.csv"),
    "ragged CSV": (lambda t, m: ["train", text_config(t, b"sentence,label\ngood film,1\nbad,0,extra,fields\n"),
                                "--out", str(t / "run")], "reviews.csv"),
    "labels out of range": (lambda t, m: ["evaluate", model_file(t, m), "--data", _npz(t, y_test=[3, 12, 1])], "12"),
    "negative labels": (lambda t, m: ["train", npz_config(t, x_train=_images(10), y_train=[0, 1] * 4 + [-1, 1]),
                                      "--out", str(t / "run")], "-1"),
    "fractional labels": (lambda t, m: ["train", npz_config(t, x_train=_images(10), y_train=[0.5] + [1.0] * 9),
                                        "--out", str(t / "run")], "fractions"),
    "x and y of different lengths": (lambda t, m: ["train", npz_config(t, x_train=_images(10), y_train=[0, 1] * 4),
                                                   "--out", str(t / "run")], "8"),
    "wrong array rank": (lambda t, m: ["train", npz_config(t, x_train=np.zeros((10, 64), np.uint8), y_train=[0, 1] * 5),
                                       "--out", str(t / "run")], "64)"),
    "NaN inputs": (lambda t, m: ["train", npz_config(t, x_train=_images(10, nan=True), y_train=[0, 1] * 5),
                                 "--out", str(t / "run")], "NaN"),
    "YAML syntax error": (lambda t, m: ["train", config(t, "task: image_classification\ndata: {dataset: [\n"),
                                        "--out", str(t / "run")], "run.yaml"),
    "unknown key": (lambda t, m: ["train", config(t, "task: image_classification\ndata: {dataset: digits}\n"
                                                     "train: {epoch: 3}\n"), "--out", str(t / "run")], "train.epoch"),
    "bad --set value": (lambda t, m: ["train", str(ROOT / "configs" / "digits_cnn.yaml"), "--set", "train.epochs=many",
                                      "--out", str(t / "run")], "train.epochs"),
    "missing config": (lambda t, m: ["train", str(t / "nowhere.yaml")], "nowhere.yaml"),
    "missing data folder": (lambda t, m: ["train", config(t, f"task: image_classification\ndata: {{folder: "
                                                             f"{t / 'no_images'}}}\n"), "--out", str(t / "run")],
                            "no_images"),
    "unwritable output folder": (lambda t, m: ["train", str(ROOT / "configs" / "digits_cnn.yaml"), "--out",
                                               str(_write(t / "a_file", b"x") / "run")], "a_file"),
    "model file from a newer ember": (lambda t, m: ["predict", model_file(t, m, edit=_newer), str(png(t, "d.png"))],
                                      "upgrade ember"),
    "truncated model file": (lambda t, m: ["predict", str(_write(t / "cut.ember", m.read_bytes()[:300])),
                                           str(png(t, "d.png"))], "cut.ember"),
    "pickle in a model file": (lambda t, m: ["predict", _pickled(t, m), str(png(t, "d.png"))], "pickle"),
    "class outside ember": (lambda t, m: ["predict", model_file(t, m, edit=_os_system), str(png(t, "d.png"))],
                            "os.system"),
    "missing input to predict": (lambda t, m: ["predict", model_file(t, m), str(t / "absent.png")], "absent.png"),
    "export to a non-.onnx file": (lambda t, m: ["export", model_file(t, m), "--out", str(t / "m.txt")], "m.txt"),
}


def _earlier_run(t: Path) -> str:
    """A finished run directory that --overwrite would replace, were the new run to succeed."""
    run = t / "earlier"
    run.mkdir()
    (run / "config.yaml").write_text("task: image_classification\n")
    (run / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n')
    (run / "model.ember").write_bytes(b"the earlier model")
    return str(run)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _images(n, nan=False):
    x = np.random.default_rng(0).random((n, 8, 8, 1)).astype(np.float32)
    if nan:
        x[3, 2, 2, 0] = np.nan
    return x


def _npz(t: Path, y_test) -> str:
    np.savez(t / "test.npz", x_train=_images(len(y_test)), y_train=np.array(y_test))
    return str(t / "test.npz")


def _newer(config):
    return {**config, "format_version": 99, "ember_version": "9.0.0"}


def _os_system(config):
    config["config"]["layers"][0]["class_name"] = "os.system"
    return config


def _pickled(t: Path, shared: Path) -> str:
    path = t / "pickled.ember"
    with zipfile.ZipFile(shared) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.namelist():
            target.writestr(item, source.read(item))
        target.writestr("data.pkl", b"\x80\x04cos\nsystem\n.")
    return str(path)


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory) -> Path:
    """A small image classifier for 8x8 grayscale images, saved as `ember train` would."""
    (x, y), _ = datasets.digits.load_data()
    model = models.Sequential([layers.Input((8, 8, 1)), layers.Flatten(), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit((x[..., None] / 16).astype(np.float32), y, epochs=1, verbose=0)
    model.metadata = {"task": "image_classification", "class_names": [str(d) for d in range(10)],
                      "preprocessing": {"image_size": [8, 8], "color_mode": "grayscale"}}
    path = tmp_path_factory.mktemp("model") / "shared.ember"
    model.save(path)
    return path


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


def prepare(case: str, tmp: Path, shared: Path):
    build, expected = CASES[case]
    built = build(tmp, shared)
    argv, env = built if isinstance(built, tuple) and isinstance(built[1], dict) else (built, {})
    (tmp / "keep").mkdir(exist_ok=True)
    (tmp / "keep" / "precious.txt").write_text("do not touch")
    return argv, env, expected


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_line_exit_2_and_changes_nothing(case, tmp_path, shared_model, capsys, monkeypatch):
    argv, env, expected = prepare(case, tmp_path, shared_model)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EMBER_OFFLINE", "1")
    before = snapshot(tmp_path)
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"ember {argv[0]}: error: "), err
    assert expected in err, err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before  # nothing overwritten, nothing left behind


@pytest.mark.parametrize("case", ["truncated model file", "YAML syntax error"])
def test_as_a_real_process(case, tmp_path, shared_model):
    argv, env, expected = prepare(case, tmp_path, shared_model)
    result = subprocess.run([sys.executable, "-m", "ember.cli", *argv], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and expected in result.stderr


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """Writes past a 200 kB file-size limit fail as on a full disk (EFBIG, where a tiny tmpfs gives ENOSPC;
    mounting one needs privileges a test should not ask for)."""
    out = tmp_path / "run"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    result = subprocess.run([sys.executable, "-m", "ember.cli", "train", str(ROOT / "configs" / "digits_cnn.yaml"),
                             "--set", "train.epochs=1", "--out", str(out), "--quiet"], capture_output=True, text=True,
                            timeout=300, preexec_fn=limit)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert ("File too large" in result.stderr or "No space left" in result.stderr) and str(tmp_path) in result.stderr
    assert "Traceback" not in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 100 kB tmpfs (needs the right to mount: root in a container that allows it)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_tmpfs_is_one_line_naming_the_file(tiny_tmpfs):
    result = subprocess.run([sys.executable, "-m", "ember.cli", "train", str(ROOT / "configs" / "digits_cnn.yaml"),
                             "--set", "train.epochs=1", "--out", str(tiny_tmpfs / "run"), "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "No space left on device" in result.stderr and str(tiny_tmpfs) in result.stderr
    assert list(tiny_tmpfs.iterdir()) == []
