"""Recurrent layers: SimpleRNN, LSTM, GRU (wrapping torch's fused nn.RNN/nn.LSTM/nn.GRU) and Bidirectional.

Inputs are (batch, steps, features). A padding mask (from `Embedding(mask_zero=True)`) marks the valid
prefix of each sequence; masked sequences run packed (`pack_padded_sequence`), so padding never changes
a result: the last output is the state after each sequence's own last token, and padded steps of
`return_sequences` outputs are zeros.
"""
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ember.layers.base import Layer, layer_config, layer_from_config
from ember.layers.initializers import initialize


def lengths_of(mask: torch.Tensor) -> torch.Tensor:
    """Valid lengths of right-padded sequences; a mask with gaps (left padding, holes) is an error."""
    lengths = mask.sum(dim=1)
    if torch.compiler.is_exporting():  # a data-dependent check cannot be traced; `ember serve` checks inputs
        return lengths
    steps = torch.arange(mask.shape[1], device=mask.device)
    if not torch.equal(mask.bool(), steps[None, :] < lengths[:, None]):
        raise ValueError("recurrent layers need right-padded sequences: the mask must be True for a prefix of "
                         "each sequence (pad at the end, as TextVectorization and pad_sequences(padding='post') do)")
    return lengths


def reverse_valid(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence's valid prefix in time; padding stays where it is."""
    if lengths is None:
        return x.flip(1)
    batch, steps = x.shape[:2]
    positions = torch.arange(steps, device=x.device)[None, :]
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    # select rows of the flattened (batch * steps, ...) view: index_select (and index_add backward) is a
    # third cheaper than gather with an index expanded over every feature (CPU, batch 32 x 56 steps x 64)
    rows = index + torch.arange(batch, device=x.device)[:, None] * steps
    return x.reshape(batch * steps, *x.shape[2:]).index_select(0, rows.reshape(-1)).reshape(x.shape)


class _RNN(Layer):
    """Shared by SimpleRNN, LSTM and GRU: Keras arguments, torch's fused kernels."""

    torch_class = None
    gates = 1
    supports_masking = True

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False, stateful=False, unroll=False,
                 **kwargs):
        super().__init__(**kwargs)
        if recurrent_dropout:
            raise ValueError(f"{type(self).__name__}: recurrent_dropout is not supported (torch's fused kernels have "
                             "no dropout between time steps); use dropout= on the inputs instead")
        if stateful:
            raise ValueError(f"{type(self).__name__}: stateful=True is not supported")
        self.units, self.activation, self.use_bias = int(units), activation, use_bias
        self.kernel_initializer, self.recurrent_initializer = kernel_initializer, recurrent_initializer
        self.bias_initializer, self.dropout = bias_initializer, float(dropout)
        self.return_sequences, self.return_state, self.go_backwards = return_sequences, return_state, go_backwards

    def _torch_kwargs(self) -> dict:
        return {}

    def build(self, input_shape):
        self.rnn = self.torch_class(input_shape[-1], self.units, batch_first=True, bias=self.use_bias,
                                    **self._torch_kwargs())
        # Keras initializes the whole (features, gates * units) kernel at once; torch stores its transpose
        initialize(self.rnn.weight_ih_l0, self.kernel_initializer)
        for gate in self.rnn.weight_hh_l0.chunk(self.gates):
            initialize(gate, self.recurrent_initializer)  # Keras: orthogonal per gate block
        if self.use_bias:
            initialize(self.rnn.bias_ih_l0, self.bias_initializer)
            nn.init.zeros_(self.rnn.bias_hh_l0)

    def _input_dropout(self, x):
        if not self.training or not self.dropout:
            return x
        # one dropout mask per sequence, shared by every step, as Keras's RNN `dropout`
        keep = torch.empty((x.shape[0], 1, x.shape[2]), device=x.device, dtype=x.dtype).bernoulli_(1 - self.dropout)
        return x * keep / (1 - self.dropout)

    def run(self, x, lengths, initial=None):
        """(sequence outputs, final states) of the torch RNN, packed when `lengths` is given (then the
        outputs are None unless `return_sequences`: nothing reads them, and unpacking is a padded copy)."""
        if lengths is None:
            return self.rnn(x, initial)
        if torch.compiler.is_exporting():
            return self._run_unpacked(x, lengths, initial)
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, states = self.rnn(packed, initial)
        if not self.return_sequences:
            return None, states
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, states

    def _run_unpacked(self, x, lengths, initial):
        """`run` without packing, for graph export (ONNX has no packed sequences): the padding after each
        sequence cannot change the steps before it, so the state after its own last token is read off the
        outputs. An LSTM's final cell state is not among them, hence no `return_state` here."""
        if self.return_state and isinstance(self.rnn, nn.LSTM):
            raise ValueError(f"layer {self.name!r}: an LSTM with return_state=True and a padding mask cannot be "
                             "exported (the cell state after each sequence's last token is not in the graph)")
        out, _ = self.rnn(x, initial)
        lengths = lengths.clamp(min=1)  # as packing runs an empty sequence for one step
        h = out[torch.arange(out.shape[0], device=out.device), (lengths - 1).to(torch.long)]
        if self.return_sequences:  # padded steps are zeros, as unpacking leaves them
            out = out * (torch.arange(out.shape[1], device=out.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        return out, h.unsqueeze(0)

    def _initial(self, initial_state):
        """Keras's `initial_state` (a list of (batch, units) states: [h], or [h, c] for an LSTM) in torch's layout."""
        if initial_state is None:
            return None
        states = [initial_state] if isinstance(initial_state, torch.Tensor) else list(initial_state)
        wanted = 2 if isinstance(self.rnn, nn.LSTM) else 1
        if len(states) != wanted:
            raise ValueError(f"layer {self.name!r}: initial_state needs {wanted} state(s) of shape (batch, "
                             f"{self.units}), got {len(states)}")
        states = [s.unsqueeze(0).contiguous() for s in states]  # (1, batch, units): one layer
        return tuple(states) if wanted == 2 else states[0]

    def forward(self, x, mask=None, initial_state=None):
        lengths = lengths_of(mask) if mask is not None else None
        x = self._input_dropout(x if x.is_floating_point() else x.float())
        if self.go_backwards:
            x = reverse_valid(x, lengths)
        out, states = self.run(x, lengths, self._initial(initial_state))
        states = states if isinstance(states, tuple) else (states,)
        states = [s[-1] for s in states]  # (layers, batch, units) -> (batch, units)
        result = out if self.return_sequences else states[0]
        return [result, *states] if self.return_state else result

    def compute_mask(self, x, mask=None):
        return mask if self.return_sequences and not self.go_backwards else None

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer, "recurrent_initializer": self.recurrent_initializer,
                "bias_initializer": self.bias_initializer, "dropout": self.dropout,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards}


class SimpleRNN(_RNN):
    """Fully connected RNN: h_t = activation(x_t W + h_{t-1} U + b) (tanh or relu, as torch supports).

    >>> layers.SimpleRNN(32, return_sequences=True)
    """

    torch_class = nn.RNN

    def _torch_kwargs(self):
        if self.activation not in ("tanh", "relu"):
            raise ValueError(f"SimpleRNN supports activation 'tanh' or 'relu', got {self.activation!r}")
        return {"nonlinearity": self.activation}


class LSTM(_RNN):
    """Long short-term memory (Hochreiter & Schmidhuber 1997); `return_state` gives [output, h, c].

    >>> layers.LSTM(64)   # last output only; return_sequences=True for every step
    """

    torch_class = nn.LSTM
    gates = 4

    def __init__(self, units, unit_forget_bias=True, recurrent_activation="sigmoid", **kwargs):
        super().__init__(units, **kwargs)
        _check_standard(self, recurrent_activation)
        self.unit_forget_bias = unit_forget_bias

    def build(self, input_shape):
        super().build(input_shape)
        if self.use_bias and self.unit_forget_bias:
            with torch.no_grad():  # gate order i, f, g, o in both Keras and torch
                self.rnn.bias_ih_l0[self.units:2 * self.units].fill_(1.0)

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRU(_RNN):
    """Gated recurrent unit (Cho et al. 2014), Keras's default `reset_after=True` form, as torch computes it.

    >>> layers.GRU(64, return_sequences=True)
    """

    torch_class = nn.GRU
    gates = 3

    def __init__(self, units, recurrent_activation="sigmoid", reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        _check_standard(self, recurrent_activation)
        if not reset_after:
            raise ValueError("GRU: only reset_after=True (Keras's default, and torch's formula) is supported")


def _check_standard(layer, recurrent_activation):
    if layer.activation != "tanh" or recurrent_activation != "sigmoid":
        raise ValueError(f"{type(layer).__name__}: torch's fused kernel computes activation='tanh' with "
                         f"recurrent_activation='sigmoid', got {layer.activation!r} and {recurrent_activation!r}")


class Bidirectional(Layer):
    """Runs `layer` forwards and a copy backwards over each sequence and merges the two outputs.

    `merge_mode`: "concat" (default), "sum", "mul", "ave" or None (a list of both). Backward sequence
    outputs are put back in time order, as Keras does.

    >>> layers.Bidirectional(layers.LSTM(64))
    """

    supports_masking = True
    _MERGE = {"concat": lambda a, b: torch.cat([a, b], dim=-1), "sum": torch.add, "mul": torch.mul,
              "ave": lambda a, b: (a + b) / 2}

    def __init__(self, layer, merge_mode="concat", **kwargs):
        super().__init__(**kwargs)
        if merge_mode is not None and merge_mode not in self._MERGE:
            raise ValueError(f"merge_mode must be one of {', '.join(self._MERGE)} or None, got {merge_mode!r}")
        if isinstance(layer, dict):  # from a saved config
            layer = layer_from_config(layer)
        if not isinstance(layer, _RNN):
            raise TypeError(f"Bidirectional wraps SimpleRNN, LSTM or GRU, got {type(layer).__name__}")
        if layer.return_state:
            raise ValueError("Bidirectional does not support return_state=True")
        self.merge_mode = merge_mode
        self.forward_layer = layer
        config = {**layer.get_config(), "name": f"backward_{layer.name}", "go_backwards": not layer.go_backwards}
        self.backward_layer = type(layer).from_config(config)

    def forward(self, x, mask=None):
        ahead = self.forward_layer(x, mask=mask)
        behind = self.backward_layer(x, mask=mask)
        if self.forward_layer.return_sequences:  # back in time order
            behind = reverse_valid(behind, lengths_of(mask) if mask is not None else None)
        return [ahead, behind] if self.merge_mode is None else self._MERGE[self.merge_mode](ahead, behind)

    def compute_mask(self, x, mask=None):
        return mask if self.forward_layer.return_sequences else None

    def get_config(self):
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": layer_config(self.forward_layer)}
