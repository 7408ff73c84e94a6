import keras
from keras import ops

from keras_prompt.layers.index_checks import checked_indices
from keras_prompt.validation import check_int
from keras_prompt.validation import known_last_dim


@keras.saving.register_keras_serializable(package="keras_prompt")
class ClassificationHead(keras.layers.Layer):
    """A dense classification layer, optionally one per prompt of a bank.

    With `num_heads=1` this is a plain `Dense(num_classes)`: kernel
    `(dim, num_classes)` and bias `(num_classes,)`. With `num_heads > 1`
    it holds one such dense layer per prompt of a bank (kernel
    `(num_heads, dim, num_classes)`, bias `(num_heads, num_classes)`) and
    each example uses the head of its own prompt through `head_ids`, so one
    batch can mix tasks. All heads share `num_classes`.

    Args:
        num_classes: int, number of output classes (>= 1).
        num_heads: int, number of heads (the prompt bank's size). Defaults
            to `1`.
        activation: activation of the output, e.g. `"softmax"` for class
            probabilities or `None` for logits. Defaults to `None`.
        kernel_initializer: initializer of the kernel. Defaults to a
            truncated normal with standard deviation 0.02 (as BERT), so
            the initial outputs are close to uniform.
        bias_initializer: initializer of the bias. Defaults to `"zeros"`.
        **kwargs: other keyword arguments of `keras.layers.Layer`
            (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: float tensor `(batch, dim)`.
        head_ids: int tensor `(batch,)`, the head of each example. Required
            when `num_heads > 1`, ignored otherwise.

    Example:

    ```python
    import numpy as np
    from keras_prompt.layers.classification_head import ClassificationHead

    head = ClassificationHead(3, activation="softmax")
    head(np.random.rand(2, 8).astype("float32")).shape  # (2, 3)

    bank = ClassificationHead(3, num_heads=2)
    bank(np.random.rand(2, 8).astype("float32"), head_ids=np.array([1, 0]))
    ```
    """

    def __init__(
        self,
        num_classes,
        num_heads=1,
        activation=None,
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.num_heads = check_int("num_heads", num_heads, 1)
        self.activation = keras.activations.get(activation)
        if kernel_initializer is None:
            kernel_initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel = None
        self.bias = None

    @property
    def head_shape(self):
        return (self.num_heads,) if self.num_heads > 1 else ()

    def build(self, input_shape):
        dim = known_last_dim(input_shape, "ClassificationHead")
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.head_shape + (dim, self.num_classes),
            initializer=self.kernel_initializer,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=self.head_shape + (self.num_classes,),
            initializer=self.bias_initializer,
        )
        self.built = True

    def call(self, inputs, head_ids=None):
        kernel = ops.cast(self.kernel, inputs.dtype)
        bias = ops.cast(self.bias, inputs.dtype)
        if self.num_heads == 1:
            outputs = ops.add(ops.matmul(inputs, kernel), bias)
        else:
            if head_ids is None:
                raise ValueError(
                    f"`ClassificationHead` '{self.name}' holds "
                    f"{self.num_heads} heads, so `head_ids` (one int per "
                    "example) is required. Received: head_ids=None"
                )
            head_ids = checked_indices(
                head_ids,
                self.num_heads,
                "head_ids",
                where=f" (one per prompt) for the head '{self.name}'",
            )
            head_ids = ops.reshape(ops.cast(head_ids, "int32"), (-1,))
            kernel = ops.take(kernel, head_ids, axis=0)
            bias = ops.take(bias, head_ids, axis=0)
            outputs = ops.einsum("bd,bdc->bc", inputs, kernel) + bias
        return self.activation(outputs)

    def compute_output_shape(self, inputs_shape, head_ids_shape=None):
        return tuple(inputs_shape[:-1]) + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "num_heads": self.num_heads,
                "activation": keras.activations.serialize(self.activation),
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
