"""Acceptance: the classic Keras MNIST CNN, verbatim but for the import line, trains to ~0.99 on MNIST.

Over seeds this network lands between about 0.988 and 0.992 (ember and Keras 3 alike), so this
guard asserts 0.988 on one fixed seed; the per-seed figures are in the issue's closing note.
"""
import os
import subprocess
import sys
import textwrap

import pytest

CLASSIC = textwrap.dedent("""
    from ember import layers, models
    from ember import datasets
    import ember
    ember.set_random_seed(0)

    (train_images, train_labels), (test_images, test_labels) = datasets.mnist.load_data()
    train_images = train_images.reshape((60000, 28, 28, 1))
    train_images = train_images.astype('float32') / 255
    test_images = test_images.reshape((10000, 28, 28, 1))
    test_images = test_images.astype('float32') / 255

    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation='relu'))
    model.add(layers.Dense(10, activation='softmax'))
    model.summary()
    model.compile(optimizer='adam',
                  loss='sparse_categorical_crossentropy',
                  metrics=['accuracy'])
    model.fit(train_images, train_labels, epochs=5)
    test_loss, test_acc = model.evaluate(test_images, test_labels)
    print("TEST_ACCURACY", test_acc)
""")


@pytest.mark.slow
@pytest.mark.data
def test_classic_keras_mnist_cnn_verbatim(ember_data, tmp_path):
    script = tmp_path / "classic.py"
    script.write_text(CLASSIC)
    env = {**os.environ, "EMBER_OFFLINE": "1", "EMBER_DATA": str(ember_data.resolve())}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                            timeout=1200, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    assert "Total params: 93,322" in result.stdout and "(None, 26, 26, 32)" in result.stdout
    accuracy = float(result.stdout.split("TEST_ACCURACY")[1].split()[0])
    print(f"classic MNIST CNN test accuracy: {accuracy:.4f}")
    assert accuracy >= 0.988
