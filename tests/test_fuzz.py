"""Property-based fuzzing of what reads files: the IDX reader, image decoding, CSV/TSV text, .npz arrays and
the model-file reader. Whatever the bytes, each returns its result or raises ember's own error (one line
naming the file), never anything else.

A normal test run tries a few dozen inputs per reader. `EMBER_FUZZ_SECONDS=120 pytest tests/test_fuzz.py`
keeps each reader going for that long (five readers: a ten-minute fuzz run).
"""
import gzip
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ember import layers, models
from ember.data.images import decode_image, load_npz
from ember.data.text import read_labeled_text
from ember.datasets.idx import read_idx
from ember.errors import EmberError

SECONDS = float(os.environ.get("EMBER_FUZZ_SECONDS", "0"))
FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def keep_fuzzing(test) -> None:
    """Run the hypothesis `test` once, then again (new examples each time) until the fuzz budget is spent."""
    deadline = time.monotonic() + SECONDS
    test()
    while time.monotonic() < deadline:
        test()


def one_line(error: Exception) -> None:
    assert isinstance(error, EmberError), f"{type(error).__name__}: {error}"
    assert "\n" not in str(error).strip(), str(error)


def _file(data: bytes, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp())
    path = folder / f"input{suffix}"
    path.write_bytes(data)
    return path


# -- IDX ---------------------------------------------------------------------------------------------
def _idx_like():
    header = st.tuples(st.sampled_from([0, 1, 255]), st.sampled_from([0x08, 0x09, 0x0D]), st.integers(0, 4))
    dims = st.lists(st.integers(0, 70000), min_size=0, max_size=4)
    body = st.binary(max_size=2000)
    return st.builds(lambda h, d, b: bytes([0, h[0], h[1], h[2]]) + b"".join(x.to_bytes(4, "big") for x in d) + b,
                     header, dims, body)


@FUZZ
@given(data=st.one_of(_idx_like(), st.binary(max_size=500)), zipped=st.booleans(), rank=st.sampled_from([1, 3]))
def _fuzz_idx(data, zipped, rank):
    path = _file(gzip.compress(data) if zipped else data, ".gz" if zipped else "")
    try:
        array = read_idx(path, rank=rank)
    except Exception as e:
        one_line(e)
    else:
        assert array.ndim == rank and array.dtype == np.uint8


def test_idx_reader():
    keep_fuzzing(_fuzz_idx)


# -- images ------------------------------------------------------------------------------------------
def _image_bytes():
    def encoded(size, mode, fmt, cut):
        buffer = io.BytesIO()
        array = np.random.default_rng(size[0]).integers(0, 255, (*size, 3 if mode == "RGB" else 1), dtype=np.uint8)
        from PIL import Image
        Image.fromarray(array.squeeze(-1) if mode == "L" else array, mode).save(buffer, fmt)
        data = buffer.getvalue()
        return data[:cut] if cut else data
    return st.builds(encoded, st.tuples(st.integers(1, 40), st.integers(1, 40)), st.sampled_from(["L", "RGB"]),
                     st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]), st.one_of(st.none(), st.integers(0, 300)))


@FUZZ
@given(data=st.one_of(_image_bytes(), st.binary(max_size=400)), mode=st.sampled_from(["grayscale", "rgb"]),
       size=st.one_of(st.none(), st.tuples(st.integers(1, 30), st.integers(1, 30))))
def _fuzz_image(data, mode, size):
    try:
        image = decode_image(data, mode, size, name="upload", max_pixels=10_000_000)
    except Exception as e:
        one_line(e)
    else:
        assert image.dtype == np.uint8 and image.shape[-1] == (1 if mode == "grayscale" else 3)


def test_image_decoder():
    keep_fuzzing(_fuzz_image)


# -- CSV / TSV text ----------------------------------------------------------------------------------
_cell = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@FUZZ
@given(rows=st.lists(st.lists(_cell, min_size=0, max_size=4), max_size=8), header=st.booleans(),
       suffix=st.sampled_from([".csv", ".tsv"]), junk=st.binary(max_size=20), latin=st.booleans())
def _fuzz_text(rows, header, suffix, junk, latin):
    sep = "," if suffix == ".csv" else "\t"
    lines = (["sentence" + sep + "label"] if header else []) + [sep.join(r) for r in rows]
    text = "\n".join(lines)
    data = text.encode("latin-1", errors="replace") if latin else text.encode() + junk
    path = _file(data, suffix)
    try:
        texts, labels, names = read_labeled_text(path)
    except Exception as e:
        one_line(e)
    else:
        assert len(texts) == len(labels) and labels.min(initial=0) >= 0 and len(names) >= 1


def test_text_reader():
    keep_fuzzing(_fuzz_text)


# -- .npz --------------------------------------------------------------------------------------------
_arrays = st.one_of(
    st.builds(lambda shape, dtype: np.zeros(shape, dtype=dtype),
              st.lists(st.integers(0, 6), min_size=0, max_size=5).map(tuple),
              st.sampled_from(["uint8", "float32", "float64", "int64", "bool", "int8", "complex64", "<U3"])),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5).map(np.array),
)


@FUZZ
@given(arrays=st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test", "class_names", "other"]),
                              _arrays, max_size=5),
       pickled=st.booleans(), cut=st.one_of(st.none(), st.integers(0, 400)))
def _fuzz_npz(arrays, pickled, cut):
    buffer = io.BytesIO()
    if pickled:
        arrays = {**arrays, "x_train": np.array([{"evil": 1}], dtype=object)}
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    path = _file(data[:cut] if cut is not None else data, ".npz")
    try:
        (x_train, y_train), (x_test, y_test), names = load_npz(path)
    except Exception as e:
        one_line(e)
    else:
        assert len(x_train) == len(y_train) and len(x_test) == len(y_test)


def test_npz_reader():
    keep_fuzzing(_fuzz_npz)


# -- model files -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    model = models.Sequential([layers.Input((4,)), layers.Dense(3, activation="relu"), layers.Dropout(0.1),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(np.zeros((4, 4), np.float32), np.array([0, 1, 0, 1]), verbose=0)
    path = tmp_path_factory.mktemp("m") / "m.ember"
    model.save(path)
    return path.read_bytes()


def _mutate_config(original: bytes, config_edit) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, config_edit(data) if name == "config.json" else data)
    return out.getvalue()


_json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                      st.text(max_size=8)),
                            lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                            max_leaves=10)


def test_model_file_reader(model_bytes):
    @FUZZ
    @given(how=st.sampled_from(["flip", "cut", "config", "raw"]), position=st.integers(0, 10**6),
           byte=st.integers(0, 255), key=st.sampled_from(["class_name", "config", "format_version", "compile_config",
                                                           "metadata", "optimizer_param_groups"]),
           value=_json_values, raw=st.binary(max_size=300))
    def fuzz(how, position, byte, key, value, raw):
        data = bytearray(model_bytes)
        if how == "flip":
            data[position % len(data)] = byte
        elif how == "cut":
            data = data[:position % len(data)]
        elif how == "config":
            data = _mutate_config(model_bytes, lambda c: json.dumps({**json.loads(c), key: value}).encode())
        else:
            data = raw
        path = _file(bytes(data), ".ember")
        try:
            model = models.load_model(path)
        except Exception as e:
            one_line(e)
        else:
            assert model.predict(np.zeros((2, 4), np.float32), verbose=0).shape == (2, 2)

    keep_fuzzing(fuzz)
