"""`Model.summary()`: the layer table Keras prints, with output shapes and parameter counts."""
from torch import nn
from ember.layers.base import saved_buffers

_WIDTHS = (33, 24, 15)


def _size(count: int) -> str:
    size, unit = float(count * 4), "B"  # float32 weights
    for next_unit in ("KB", "MB", "GB"):
        if size < 1024:
            break
        size, unit = size / 1024, next_unit
    return f"{size:.2f} {unit}"


def _row(cells, widths, left="│", middle="│", right="│", align=("<", "<", ">")) -> str:
    parts = [f" {str(c):{a}{w - 2}} " for c, w, a in zip(cells, widths, align)]
    return left + middle.join(parts) + right


def _rule(widths, left, middle, right, fill) -> str:
    return left + middle.join(fill * w for w in widths) + right


def _shape(layer) -> str:
    shape = getattr(layer, "output_shape", None)
    return "?" if shape is None else "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _count(module: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    frozen += sum(b.numel() for b in saved_buffers(module))
    return trainable, frozen


def _layers_of(model) -> list:
    if hasattr(model, "layers") and isinstance(model.layers, nn.ModuleList):
        return list(model.layers)
    return list(model.children())


def print_summary(model, print_fn=None) -> None:
    """Print the summary table; raises if the model has not been built yet."""
    print_fn = print_fn or print
    if not model.built:
        raise ValueError(f"model {model.name!r} has not been built yet: give the first layer an input_shape, "
                         "call model.build(input_shape), or call the model on a batch of data")
    rows = [(f"{getattr(layer, 'name', type(layer).__name__.lower())} ({type(layer).__name__})", _shape(layer),
             f"{sum(_count(layer)):,}") for layer in _layers_of(model)]
    # Keras's widths, widened where a long layer name or shape would otherwise break the table
    widths = [max([w, *(len(row[i]) + 2 for row in rows)]) for i, w in enumerate(_WIDTHS)]
    lines = [f'Model: "{model.name}"', _rule(widths, "┏", "┳", "┓", "━"),
             _row(("Layer (type)", "Output Shape", "Param #"), widths, "┃", "┃", "┃"),
             _rule(widths, "┡", "╇", "┩", "━")]
    lines += [_row(row, widths) for row in rows]
    lines.append(_rule(widths, "└", "┴", "┘", "─"))
    trainable, frozen = _count(model)
    lines += [f" Total params: {trainable + frozen:,} ({_size(trainable + frozen)})",
              f" Trainable params: {trainable:,} ({_size(trainable)})",
              f" Non-trainable params: {frozen:,} ({_size(frozen)})"]
    print_fn("\n".join(lines))
