import keras
from keras import ops

from keras_prompt.validation import check_float
from keras_prompt.validation import check_int


@keras.saving.register_keras_serializable(package="keras_prompt")
class ResidualReparameterization(keras.layers.Layer):
    """Residual reparameterisation of prompt vectors (Residual Prompt Tuning).

    Razdaibiedina et al. (ACL Findings 2023) train each prompt vector `p`
    through a shared bottleneck network with a skip connection:
    `p' = p + LayerNorm(W_up ReLU(W_down p))`. The network is shared by
    every prompt vector (every position, every prompted layer of a deep
    prompt and every prompt of a bank); only `p'` reaches the model, so
    after training the prompt folds into plain vectors (`p'`) and the
    network is dropped: prompt files, banks, export and serving see plain
    prompts. `PromptEmbedding(reparameterization=...)` applies it.

    Args:
        bottleneck_dim: int, the width of the bottleneck. Defaults to 400.
        epsilon: float, the LayerNorm epsilon. Defaults to 1e-5.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        inputs: float tensor `(..., dim)`, the trained prompt parameters.

    Example:

    ```python
    import numpy as np
    import keras_prompt

    layer = keras_prompt.layers.ResidualReparameterization(bottleneck_dim=8)
    prompt = np.random.rand(4, 16).astype("float32")
    layer(prompt).shape  # (4, 16): the vectors the model sees
    ```
    """

    def __init__(self, bottleneck_dim=400, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.bottleneck_dim = check_int("bottleneck_dim", bottleneck_dim, 1)
        self.epsilon = check_float("epsilon", epsilon, inclusive=False)
        self.down = keras.layers.Dense(
            self.bottleneck_dim, activation="relu", name="down", dtype="float32"
        )
        self.up = None
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, name="layer_norm", dtype="float32"
        )

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.up = keras.layers.Dense(dim, name="up", dtype="float32")
        self.down.build(input_shape)
        self.up.build(tuple(input_shape[:-1]) + (self.bottleneck_dim,))
        self.layer_norm.build(tuple(input_shape[:-1]) + (dim,))
        self.built = True

    def call(self, inputs):
        inputs = ops.cast(inputs, "float32")
        return inputs + self.layer_norm(self.up(self.down(inputs)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"bottleneck_dim": self.bottleneck_dim, "epsilon": self.epsilon}
        )
        return config
