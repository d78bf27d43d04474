import numpy as np
from PIL import Image

from ember.evaluation import plots


def _is_png(path, min_size=(300, 200)):
    with Image.open(path) as image:
        return image.format == "PNG" and image.size[0] >= min_size[0] and image.size[1] >= min_size[1]


def test_plots_write_pngs(tmp_path):
    history = [{"epoch": e, "loss": 1 / e, "accuracy": 1 - 1 / (e + 1), "val_loss": 1.2 / e,
                "val_accuracy": 0.9 - 1 / (e + 2), "lr": 1e-3, "seconds": 1.0} for e in range(1, 4)]
    assert _is_png(plots.learning_curves(history, tmp_path / "a" / "curves.png"))
    assert _is_png(plots.confusion_matrix([[3, 1], [0, 4]], ["cat", "dog"], tmp_path / "cm.png"))
    images = np.random.default_rng(0).random((5, 8, 8, 1))
    assert _is_png(plots.image_grid(images, [str(i) for i in range(5)], tmp_path / "grid.png",
                                    alerts=[True, False, True, False, False]))
    rgb = np.random.default_rng(0).random((3, 8, 8, 3))
    assert _is_png(plots.image_grid(rgb, ["a", "b", "c"], tmp_path / "rgb.png"), (100, 100))
