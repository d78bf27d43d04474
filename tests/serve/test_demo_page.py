"""The demo page in headless Chromium: draw digits on the canvas, upload an image, read the predictions back.

Needs Debian's chromium and chromium-driver (.ci/run installs them) and MNIST under $EMBER_DATA; skips
without them. Set EMBER_SCREENSHOTS=DIR to keep the screenshots.
"""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import Server

pytestmark = pytest.mark.data  # trains on MNIST

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

# strokes on the 280 x 280 canvas, as (x, y) points from its top-left corner
STROKES = {
    "1": [[(140, 50), (140, 120), (140, 190), (140, 235)]],
    "0": [[(140 + 55 * np.sin(t), 140 - 85 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 40)]],
    "7": [[(80, 60), (150, 60), (205, 60), (170, 130), (140, 190), (120, 240)]],
}


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory, ember_data_module):
    """The classic Keras MNIST CNN, one epoch on 20,000 training images (about 98% accurate)."""
    import ember
    from ember import datasets, layers, models
    ember.set_random_seed(0)
    (x, y), _ = datasets.mnist.load_data()
    x = (x[:20000, :, :, None] / 255.0).astype(np.float32)
    model = models.Sequential([
        layers.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Conv2D(64, 3, activation="relu"),
        layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y[:20000], epochs=1, batch_size=64, verbose=0)
    model.metadata = {"task": "image_classification", "class_names": [str(d) for d in range(10)],
                      "preprocessing": {"image_size": [28, 28], "color_mode": "grayscale"}}
    path = tmp_path_factory.mktemp("mnist") / "mnist.ember"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def ember_data_module():
    value = os.environ.get("EMBER_DATA")
    if not value or not Path(value, "mnist").is_dir():
        pytest.skip("needs MNIST: set EMBER_DATA (CI uses ../shared/data)")
    return Path(value)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", "--window-size=900,700",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(mnist_model, browser):
    server = Server(mnist_model, "--name", "mnist")
    try:
        yield server, browser
    finally:
        errors = server.stop()
        assert "Traceback" not in errors, errors


def _wait(driver, condition, seconds=30):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, seconds).until(condition)


def _open(server, driver):
    driver.get(server.url + "/")
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def _prediction(driver):
    return _wait(driver, lambda d: d.execute_script("return document.body.dataset.prediction || null"))


def _draw(driver, strokes):
    from selenium.webdriver.common.action_chains import ActionChains
    canvas = driver.find_element("id", "pad")
    half_w, half_h = canvas.size["width"] / 2, canvas.size["height"] / 2
    for stroke in strokes:
        actions = ActionChains(driver, duration=10)
        x0, y0 = stroke[0]
        actions.move_to_element_with_offset(canvas, int(x0 - half_w), int(y0 - half_h)).click_and_hold()
        for (xa, ya), (xb, yb) in zip(stroke, stroke[1:]):
            actions.move_by_offset(int(round(xb - xa)), int(round(yb - ya)))
        actions.release().perform()


def _keep(driver, tmp_path, name):
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    with Image.open(shot) as image:
        assert image.size[0] > 300
    if os.environ.get("EMBER_SCREENSHOTS"):
        Path(os.environ["EMBER_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["EMBER_SCREENSHOTS"]) / name)


@pytest.mark.parametrize("digit", list(STROKES))
def test_a_drawn_digit_is_recognised(page, digit, tmp_path):
    server, driver = page
    _open(server, driver)
    _draw(driver, STROKES[digit])
    assert _prediction(driver) == digit
    bars = driver.find_elements("css selector", "#bars .bar")
    assert len(bars) == 5 and bars[0].find_element("css selector", ".label").text == digit
    _keep(driver, tmp_path, f"demo_drawn_{digit}.png")


def test_an_uploaded_image_is_classified_and_a_bad_one_is_explained(page, tmp_path):
    from ember import datasets
    server, driver = page
    _, (x_test, y_test) = datasets.mnist.load_data()
    Image.fromarray(x_test[0]).save(tmp_path / "digit.png")
    (tmp_path / "notes.txt").write_text("not an image")
    _open(server, driver)
    driver.find_element("id", "file").send_keys(str(tmp_path / "digit.png"))
    assert _prediction(driver) == str(y_test[0])
    _keep(driver, tmp_path, "demo_upload.png")
    driver.find_element("id", "file").send_keys(str(tmp_path / "notes.txt"))
    error = _wait(driver, lambda d: d.find_element("id", "error").text or None)
    assert "not a readable image" in error
