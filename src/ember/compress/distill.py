"""Knowledge distillation (Hinton et al. 2015): a smaller student learns from a trained teacher's softened outputs.

The loss per batch is alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − alpha) · CE(labels,
student): the teacher's relative probabilities of the wrong classes (its "dark knowledge") carry more than
the labels alone. Both models are classifiers ending in softmax; the teacher is frozen and only scored.

>>> student = distill(teacher, student, x_train, y_train, temperature=4, alpha=0.9, epochs=5)
"""
import torch
import torch.nn.functional as F

from ember.models import Model


def _logits(model, x):
    if isinstance(model, Model) and model.has_logits_before("softmax"):
        return model.forward_logits(x)
    return torch.log(model(x).clamp_min(1e-7))  # probabilities in: their logs are logits up to a constant


class Distiller(Model):
    """`student` wrapped for `fit`: its forward pass, the distillation loss. The teacher is held outside the
    module tree, so neither the optimizer nor a saved file sees its weights."""

    def __init__(self, teacher, student, *, temperature: float = 4.0, alpha: float = 0.9):
        super().__init__(name=f"{student.name}_distiller")
        if temperature <= 0 or not 0 <= alpha <= 1:
            raise ValueError(f"distillation needs temperature > 0 and alpha in [0, 1], got {temperature}, {alpha}")
        self.student = student
        self.__dict__["teacher"] = teacher.eval()
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.built = True

    def forward(self, x):
        return self.student(x)

    def _check_compiled(self):
        pass

    def loss_and_predictions(self, xs, y, weight):
        x = xs[0]
        with torch.no_grad():
            teacher = _logits(self.teacher, x).float() / self.temperature
        logits = _logits(self.student, x).float()
        soft = F.kl_div(F.log_softmax(logits / self.temperature, dim=-1), F.log_softmax(teacher, dim=-1),
                        log_target=True, reduction="batchmean") * self.temperature ** 2
        hard = F.cross_entropy(logits, y.long())
        return self.alpha * soft + (1 - self.alpha) * hard, torch.softmax(logits.detach(), dim=-1)


def distill(teacher, student, x, y, *, temperature: float = 4.0, alpha: float = 0.9, epochs: int = 5,
            batch_size: int = 32, optimizer="adam", verbose="auto", validation_data=None):
    """Train `student` (a built classifier) on `teacher`'s softened outputs and the labels `y`; returns the
    student, compiled with sparse categorical cross-entropy and accuracy for evaluation."""
    teacher.to(student.device if hasattr(student, "device") else "cpu")
    distiller = Distiller(teacher, student, temperature=temperature, alpha=alpha)
    distiller.compile(optimizer=optimizer, metrics=["sparse_categorical_accuracy"])
    distiller.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose, validation_data=validation_data)
    student.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return student
