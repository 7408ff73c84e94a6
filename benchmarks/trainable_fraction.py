"""Trainable-parameter fraction of prompt tuning on T5-shaped configs.

Counts T5 parameters from the config (no weights needed), checks the
formula against keras-hub `T5Backbone.count_params()` on small configs
built here, then prints the fraction a prompt of length 20 and 100 trains
for `t5_base`-shaped and `t5_1.1_xxl`-shaped models.

    python benchmarks/trainable_fraction.py
"""

CONFIGS = {
    # Original T5 (tied embeddings, ReLU FFN).
    "t5_base": dict(
        vocabulary_size=32128,
        hidden_dim=768,
        intermediate_dim=3072,
        num_layers=12,
        num_heads=12,
        key_value_dim=64,
        use_gated_activation=False,
        tie_embedding_weights=True,
    ),
    # T5 1.1 / LM-adapted XXL (untied, gated GELU).
    "t5_1.1_xxl": dict(
        vocabulary_size=32128,
        hidden_dim=4096,
        intermediate_dim=10240,
        num_layers=24,
        num_heads=64,
        key_value_dim=64,
        use_gated_activation=True,
        tie_embedding_weights=False,
    ),
}


def t5_parameters(
    vocabulary_size,
    hidden_dim,
    intermediate_dim,
    num_layers,
    num_heads,
    key_value_dim=None,
    use_gated_activation=True,
    tie_embedding_weights=True,
):
    d, f, h = hidden_dim, intermediate_dim, num_heads
    inner = h * (key_value_dim or d // h)
    attention = 4 * d * inner
    ffn = (3 if use_gated_activation else 2) * d * f
    relative_bias = 32 * h  # first layer of each stack
    encoder = num_layers * (attention + ffn + 2 * d) + relative_bias + d
    decoder = num_layers * (2 * attention + ffn + 3 * d) + relative_bias + d
    embeddings = vocabulary_size * d * (1 if tie_embedding_weights else 2)
    return embeddings + encoder + decoder


def check_formula():
    import keras_hub

    for gated in (True, False):
        for tied in (True, False):
            config = dict(
                vocabulary_size=101,
                hidden_dim=24,
                intermediate_dim=40,
                num_layers=2,
                num_heads=3,
                key_value_dim=5,
                use_gated_activation=gated,
                tie_embedding_weights=tied,
            )
            real = keras_hub.models.T5Backbone(**config).count_params()
            assert real == t5_parameters(**config), (config, real)
    print("formula matches keras-hub T5Backbone.count_params() on 4 configs")


def main():
    check_formula()
    print(
        f"{'config':<12} {'parameters':>16} {'P':>4} {'prompt':>8} "
        f"{'trainable %':>12}"
    )
    for name, config in CONFIGS.items():
        total = t5_parameters(**config)
        for length in (20, 100):
            prompt = length * config["hidden_dim"]
            print(
                f"{name:<12} {total:>16,} {length:>4} {prompt:>8,} "
                f"{100 * prompt / (total + prompt):>11.5f}%"
            )


if __name__ == "__main__":
    main()
