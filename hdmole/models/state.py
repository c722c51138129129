"""Loading a checkpoint that holds part of a model: the one ``load_state_dict(strict=False)`` of the project.

Checkpoints are partial by design (``lm`` saves the LLM, ``router`` the global router, a PEFT system its
adapter tensors), so tensors missing from one are normal and callers that need every tensor check that
themselves (``hdmole.models.checkpoint.load_model_for_inference``). A tensor the model does not have is
never normal: it means the wrong checkpoint, and loading on would silently drop trained weights.
"""

from __future__ import annotations

from torch import nn

from hdmole.nn import is_adapter_parameter


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (unreadable, truncated, not hdmole's, or not matching the model or
    config it is used with): the message names the file and what to do."""


def load_partial_state(model: nn.Module, state: dict, source: str, fix: str, adapter_fix: str | None = None) -> None:
    """Loads ``state`` into ``model``; tensors the model lacks are a ValueError naming ``source`` (e.g.
    ``"checkpoint exp/base/best.pt"``), a few of the tensors and ``fix``. When they are HDMoLE adapter
    tensors and ``adapter_fix`` is given, the message says so and gives ``adapter_fix`` instead (both a
    CheckpointError, a ValueError)."""
    # Shapes first: load_state_dict would raise one "size mismatch" line per tensor (dozens), in a traceback.
    own = model.state_dict()
    wrong = [(key, tuple(value.shape), tuple(own[key].shape)) for key, value in state.items()
             if key in own and hasattr(value, "shape") and tuple(value.shape) != tuple(own[key].shape)]
    if wrong:
        key, theirs, ours = wrong[0]
        more = f" (and {len(wrong) - 1} more tensors differ)" if len(wrong) > 1 else ""
        raise CheckpointError(
            f"{source} does not fit the model built from the config: tensor {key} is {list(theirs)} there but "
            f"{list(ours)} here{more}. It was made with another model config or another accent list (whose "
            "length sets the number of domains). Fix: use the model config and accents.txt it was made with, "
            "or the checkpoint made with these")
    unexpected = model.load_state_dict(state, strict=False).unexpected_keys
    if not unexpected:
        return
    adapter = [key for key in unexpected if is_adapter_parameter(key)]
    if adapter and adapter_fix is not None:
        raise CheckpointError(f"{source} holds HDMoLE adapter tensors (e.g. {adapter[:2]}) {adapter_fix}")
    raise CheckpointError(f"{source} holds tensors this model does not have, e.g. {unexpected[:3]}: {fix}")
