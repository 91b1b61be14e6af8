"""Recording a layer's output during a forward, shared by every method that hooks a layer (the CAMs).

Method modules import this one and never each other.
"""

from contextlib import contextmanager

import torch


@contextmanager
def record_outputs(layer):
    """Record what ``layer`` outputs during the block; the hook is removed on exit, error or not.

    Yields the list the outputs are appended to.

    Example
    -------
    >>> layer = torch.nn.Identity()
    >>> with record_outputs(layer) as outputs:
    ...     _ = layer(torch.ones(1, 2, 3, 4))
    >>> outputs[0].shape, len(layer._forward_hooks)
    (torch.Size([1, 2, 3, 4]), 0)
    """
    outputs = []
    handle = layer.register_forward_hook(lambda module, args, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


def single_map(outputs, what="output of the CAM layer"):
    """The one (batch, channels, t, f) tensor recorded in one forward, or a clear error.

    >>> single_map([torch.zeros(1, 2, 3, 4)]).shape
    torch.Size([1, 2, 3, 4])
    >>> single_map([])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    RuntimeError: Expected exactly one output of the CAM layer per forward, got 0: ...
    """
    if len(outputs) != 1:
        raise RuntimeError(
            f"Expected exactly one {what} per forward, got {len(outputs)}: a CAM layer must run once per forward "
            "and its output must depend on the input."
        )
    (output,) = outputs
    if not torch.is_tensor(output) or output.dim() != 4:
        shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
        raise ValueError(
            f"The {what} must be one (batch, channels, time, freq) tensor, got {shape}; "
            "hook a layer that outputs one (every backend's cam_layer does)."
        )
    return output
