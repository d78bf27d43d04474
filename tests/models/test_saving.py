import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from ember import layers, models
from ember.errors import ModelFileError
from tests.models.test_sequential import blobs, classic_cnn, mlp


def trained_cnn(tmp_path):
    model = classic_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    model.fit(x, rng.integers(0, 10, 64), epochs=1, verbose=0)
    return model, x


def test_load_in_a_fresh_process_predicts_identically(tmp_path):
    model, x = trained_cnn(tmp_path)
    model.save(tmp_path / "m.ember")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.predict(x, verbose=0))
    script = ("import numpy as np, sys; from ember import models; "
              "m = models.load_model(sys.argv[1] + '/m.ember'); "
              "p = m.predict(np.load(sys.argv[1] + '/x.npy'), verbose=0); "
              "assert np.array_equal(p, np.load(sys.argv[1] + '/expected.npy')), 'predictions differ'; print('same')")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "same" and result.stderr == ""


def test_file_layout_is_json_and_safetensors(tmp_path):
    model, _ = trained_cnn(tmp_path)
    model.save(tmp_path / "m.ember")
    with zipfile.ZipFile(tmp_path / "m.ember") as z:
        assert set(z.namelist()) == {"config.json", "model.safetensors", "optimizer.safetensors"}
        config = json.loads(z.read("config.json"))
    assert config["class_name"] == "Sequential" and config["compile_config"]["loss"]["class_name"]
    assert [layer["class_name"] for layer in config["config"]["layers"]][:2] == ["Conv2D", "MaxPooling2D"]


def test_weights_are_stored_plainly_and_the_file_gets_the_usual_permissions(tmp_path):
    model, _ = trained_cnn(tmp_path)
    model.save(tmp_path / "m.ember")
    with zipfile.ZipFile(tmp_path / "m.ember") as z:
        kinds = {info.filename: info.compress_type for info in z.infolist()}
    assert kinds == {"model.safetensors": zipfile.ZIP_STORED, "optimizer.safetensors": zipfile.ZIP_STORED,
                     "config.json": zipfile.ZIP_DEFLATED}
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.ember").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_flipped_byte_in_the_weights_is_caught(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the stored weights: only the zip's CRC can tell
    bad = tmp_path / "flipped.ember"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="flipped.ember"):
        models.load_model(bad)


def test_optimizer_state_survives_so_training_continues_identically(tmp_path):
    x, y = blobs(64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    model.save(tmp_path / "m.ember")
    loaded = models.load_model(tmp_path / "m.ember")
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.parameters(), loaded.parameters()):
        torch.testing.assert_close(a, b)


def _rewrite(src, dst, replace=None, extra=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, replace(name, data) if replace else data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)


def _edit_config(src, dst, edit):
    """Copy a model file, changing its config.json with `edit(config)`."""
    def replace(name, data):
        if name != "config.json":
            return data
        config = json.loads(data)
        edit(config)
        return json.dumps(config).encode()
    _rewrite(src, dst, replace=replace)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def saved(tmp_path):
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(tmp_path / "good.ember")
    return tmp_path / "good.ember"


def test_a_pickle_inside_is_refused_and_never_run(saved, tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.ember"
    _rewrite(saved, bad, extra={"data.pkl": pickle.dumps(_Exploit(marker))})
    with pytest.raises(ModelFileError, match="pickled data"):
        models.load_model(bad)
    weights_as_pickle = tmp_path / "bad2.ember"
    _rewrite(saved, weights_as_pickle,
             replace=lambda n, d: pickle.dumps(_Exploit(marker)) if n == "model.safetensors" else d)
    with pytest.raises(ModelFileError, match="not a valid safetensors"):
        models.load_model(weights_as_pickle)
    raw_pickle = tmp_path / "raw.ember"
    raw_pickle.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ModelFileError, match="not a zip"):
        models.load_model(raw_pickle)
    assert not marker.exists()


def test_a_class_outside_ember_is_refused(saved, tmp_path):
    bad = tmp_path / "bad.ember"
    _edit_config(saved, bad, lambda config: config["config"]["layers"][0].update(class_name="os.system"))
    with pytest.raises(ModelFileError, match="unknown layer class 'os.system'"):
        models.load_model(bad)


def test_a_zip_entry_escaping_its_folder_is_refused(saved, tmp_path):
    bad = tmp_path / "bad.ember"
    _rewrite(saved, bad, extra={"../escape.txt": b"x"})
    with pytest.raises(ModelFileError, match=r"unsafe entry '\.\./escape\.txt'"):
        models.load_model(bad)
    assert not (tmp_path.parent / "escape.txt").exists()


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_a_truncated_file_is_a_clear_error(saved, tmp_path, keep):
    data = saved.read_bytes()
    bad = tmp_path / "truncated.ember"
    bad.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ModelFileError, match="truncated"):
        models.load_model(bad)


def test_a_file_from_a_newer_ember_says_upgrade(saved, tmp_path):
    bad = tmp_path / "new.ember"
    _edit_config(saved, bad, lambda config: config.update(format_version=99, ember_version="9.0.0"))
    with pytest.raises(ModelFileError, match="written by ember 9.0.0.*upgrade ember"):
        models.load_model(bad)


def test_custom_layers_need_custom_objects(tmp_path):
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.scale = torch.nn.Parameter(torch.full((input_shape[-1],), 2.0))

        def forward(self, x):
            return x * self.scale

    model = models.Sequential([layers.Input(shape=(3,)), Scale(), layers.Dense(2)])
    model.save(tmp_path / "c.ember")
    with pytest.raises(ModelFileError, match="unknown layer class 'Scale'"):
        models.load_model(tmp_path / "c.ember")
    loaded = models.load_model(tmp_path / "c.ember", custom_objects={"Scale": Scale})
    x = np.ones((2, 3), dtype="float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_weights_files_round_trip_and_mismatch_is_named(tmp_path):
    model = mlp()
    model.save_weights(tmp_path / "w.safetensors")
    other = mlp()
    other.load_weights(tmp_path / "w.safetensors")
    x = np.ones((2, 8), dtype="float32")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ModelFileError, match="has shape"):
        mlp(classes=4).load_weights(tmp_path / "w.safetensors")


def test_save_is_atomic_and_needs_the_suffix(tmp_path):
    model = mlp()
    with pytest.raises(ValueError, match=".ember"):
        model.save(tmp_path / "m.zip")
    assert list(tmp_path.iterdir()) == []


def test_a_model_built_by_fit_remembers_its_input_shape(tmp_path):
    model = models.Sequential([layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((16, 4, 4)).astype("float32")
    model.fit(x, np.arange(16) % 3, epochs=1, verbose=0)
    model.save(tmp_path / "m.ember")
    np.testing.assert_array_equal(models.load_model(tmp_path / "m.ember").predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_metadata_travels_in_the_model_file(tmp_path):
    model = mlp()
    model.metadata = {"class_names": ["a", "b"], "preprocessing": {"image_size": [8, 8]}}
    model.save(tmp_path / "m.ember")
    assert models.load_model(tmp_path / "m.ember").metadata == model.metadata
    model.metadata = {"bad": object()}
    with pytest.raises(ValueError, match="JSON data only"):
        model.save(tmp_path / "n.ember")
    assert not (tmp_path / "n.ember").exists()


def test_training_goes_on_identically_after_save_and_load(tmp_path):
    """Regression: restored Adam moments were contiguous while channels_last conv weights are not, and
    torch's fused Adam pairs them by memory position, so the first step after loading went astray."""
    from ember import layers, models
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8, 8, 3), dtype=np.float32), rng.integers(0, 3, 64)  # 3 channels: layouts differ
    model = models.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    model.save(tmp_path / "m.ember")
    loaded = models.load_model(tmp_path / "m.ember")
    for m in (model, loaded):
        m.train_on_batch(x[:16], y[:16])
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
