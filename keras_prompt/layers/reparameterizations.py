"""The reparameterisations a `PromptConfig` may name.

A reparameterisation computes the prompt vectors the model sees from the
trained parameters, during training only: it folds into plain vectors when
the prompt is saved. A new one is a Keras layer mapping `(..., dim)` to
`(..., dim)` registered in `METHODS` under its name.
"""

import inspect

from keras_prompt.layers.residual_reparameterization import (
    ResidualReparameterization,
)

#: Name -> layer class.
METHODS = {"residual": ResidualReparameterization}


def _arguments(cls):
    parameters = inspect.signature(cls.__init__).parameters
    return {
        name: parameter.default
        for name, parameter in parameters.items()
        if name not in ("self", "kwargs")
    }


def normalize(spec):
    """`None`, or the dict `{"method": name, **arguments}` (every argument
    spelt out) that `spec` (a name, or such a dict) describes.

    Raises a `ValueError` naming `reparameterization` for an unknown
    method or argument.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"method": spec}
    if not isinstance(spec, dict) or spec.get("method") not in METHODS:
        raise ValueError(
            "`reparameterization` must be None, one of "
            f"{sorted(METHODS)}, or a dict with a `method` among them. "
            f"Received: reparameterization={spec!r}"
        )
    arguments = _arguments(METHODS[spec["method"]])
    unknown = sorted(set(spec) - {"method"} - set(arguments))
    if unknown:
        raise ValueError(
            f"The {spec['method']!r} reparameterization takes "
            f"{sorted(arguments)}; got {unknown}. Received: "
            f"reparameterization={spec!r}"
        )
    normalized = {"method": spec["method"], **arguments}
    normalized.update(spec)
    # Checks the arguments' values now.
    build(normalized)
    return normalized


def build(spec, **kwargs):
    """The layer of a normalised `spec` (`None` for none)."""
    if spec is None:
        return None
    arguments = {k: v for k, v in spec.items() if k != "method"}
    return METHODS[spec["method"]](**arguments, **kwargs)
