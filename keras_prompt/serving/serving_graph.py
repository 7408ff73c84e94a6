"""The serving graph of an exported model (see `keras_prompt.serving.export`).

`ServingGraph` holds the tracked pieces of the SavedModel's signature: the
lookup tables of the two asset files (the prompt state and the task
names), the flag that copies the state into the prompt variables on the
first request, and `serve`, which turns raw strings (and task names) into
generated strings or class probabilities. Generation runs in fixed chunks
of `batch_size` (keras-hub's generation loop needs a static batch size).
"""

import os

#: The asset file of the prompt state: one `name<TAB>base64` line each.
STATE_ASSET = "keras_prompt_state.tsv"
#: The asset file of the task names: one `name<TAB>slot` line each.
TASKS_ASSET = "keras_prompt_tasks.tsv"


def _strings_out(preprocessor, token_ids, padding_mask):
    """Detokenised strings, as the preprocessor's `generate_postprocess`."""
    from keras_hub.src.utils.tensor_utils import strip_to_ragged

    tokenizer = preprocessor.tokenizer
    ragged = strip_to_ragged(
        token_ids, padding_mask, tokenizer.special_token_ids
    )
    return tokenizer.detokenize(ragged)


def _fixed_shape(x, batch_size):
    import tensorflow as tf

    return {
        key: tf.ensure_shape(
            value, [batch_size] + [None] * (value.shape.rank - 1)
        )
        for key, value in x.items()
    }


def _generate_chunk(model, step, texts, prompt_ids, batch_size, length):
    """Strings `(batch_size,)` generated for one fixed-size chunk."""
    preprocessor = model.preprocessor
    x = preprocessor.generate_preprocess(texts, sequence_length=length)
    x = _fixed_shape(dict(x), batch_size)
    if prompt_ids is not None:
        x["prompt_ids"] = prompt_ids
    token_ids, padding_mask = model.generated_tokens(step(x))
    return _strings_out(preprocessor, token_ids, padding_mask)


def _generate_in_chunks(model, step, texts, prompt_ids, batch_size, max_length):
    """Generation on any number of inputs in chunks of `batch_size`."""
    import tensorflow as tf

    count = tf.shape(texts)[0]
    chunks = (count + batch_size - 1) // batch_size
    padding = chunks * batch_size - count
    texts = tf.concat([texts, tf.fill([padding], "")], axis=0)
    texts = tf.reshape(texts, [chunks, batch_size])
    if prompt_ids is None:
        ids = tf.zeros([chunks, batch_size], tf.int32)
    else:
        ids = tf.concat([prompt_ids, tf.zeros([padding], tf.int32)], axis=0)
        ids = tf.reshape(ids, [chunks, batch_size])

    def chunk(args):
        chunk_texts, chunk_ids = args
        return _generate_chunk(
            model,
            step,
            chunk_texts,
            None if prompt_ids is None else chunk_ids,
            batch_size,
            max_length,
        )

    outputs = tf.map_fn(
        chunk,
        (texts, ids),
        fn_output_signature=tf.TensorSpec([batch_size], tf.string),
        parallel_iterations=1,
    )
    return tf.reshape(outputs, [-1])[:count]


def _vote(outputs, num_members):
    """In-graph majority vote over `(batch, members)` strings, ties to the
    earliest member, as `ensemble.majority_vote`."""
    import tensorflow as tf

    rows = tf.reshape(outputs, [-1, num_members])
    equal = tf.equal(rows[:, :, None], rows[:, None, :])
    counts = tf.reduce_sum(tf.cast(equal, tf.int32), axis=2)
    best = tf.argmax(counts, axis=1, output_type=tf.int32)
    return tf.gather(rows, best, batch_dims=1), rows


def _asset_table(path, value_dtype, default):
    """A lookup table `first column -> second column` of a TSV asset."""
    import tensorflow as tf

    return tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            path,
            key_dtype=tf.string,
            key_index=0,
            value_dtype=value_dtype,
            value_index=1,
        ),
        default_value=default,
    )


class ServingGraph:
    """The tracked pieces of the serving graph (tables, flag, functions).

    Args:
        spec: what is exported: a dict of `"model"` (the task model),
            `"variables"` (its state variables by name), `"slots"` (task
            name -> slot, or `None`) and `"members"` (an ensemble's slots,
            or `None`).
        asset_dir: the folder holding `STATE_ASSET` and `TASKS_ASSET`.
        batch_size: int, the fixed chunk size of generation.
        max_length: optional int, the generated sequence length.
        jit_compile: bool, compile the decoding loop with XLA.
    """

    def __init__(self, spec, asset_dir, batch_size, max_length, jit_compile):
        import tensorflow as tf

        self.spec = spec
        self.model = spec["model"]
        self.batch_size = batch_size
        self.max_length = max_length
        model = self.model
        if model.generates_text:
            stop = model.stop_token_ids()

            def step(x):
                return model.generate_step(x, stop_token_ids=stop)

            # Tokenisation stays outside XLA; the decoding loop inside.
            self.step = (
                tf.function(step, jit_compile=True) if jit_compile else step
            )
        self.holder = tf.Module()
        self.holder.state_table = _asset_table(
            os.path.join(asset_dir, STATE_ASSET), tf.string, ""
        )
        if spec["slots"] is not None:
            self.holder.task_table = _asset_table(
                os.path.join(asset_dir, TASKS_ASSET), tf.int64, -1
            )
        self.holder.loaded = tf.Variable(
            False, trainable=False, name="keras_prompt_state_loaded"
        )

    def load_state(self):
        """Copies the state asset into the prompt variables once."""
        import tensorflow as tf

        holder = self.holder

        def load():
            for key, variable in self.spec["variables"].items():
                raw = holder.state_table.lookup(tf.constant(key))
                value = tf.io.parse_tensor(tf.io.decode_base64(raw), "float32")
                variable.assign(tf.reshape(value, variable.shape))
            holder.loaded.assign(True)
            return tf.constant(True)

        return tf.cond(holder.loaded, lambda: tf.constant(True), load)

    def task_ids(self, tasks):
        import tensorflow as tf

        table = self.holder.task_table
        ids = table.lookup(tasks)
        names = tf.reshape(table.export()[0], [-1])
        names = tf.boolean_mask(names, tf.strings.length(names) > 0)
        known = tf.strings.reduce_join(names, separator=", ")
        check = tf.debugging.Assert(
            tf.reduce_all(ids >= 0),
            [
                "Unknown task name(s):",
                tf.boolean_mask(tasks, ids < 0),
                "Known tasks:",
                known,
            ],
            summarize=64,
        )
        with tf.control_dependencies([check]):
            return tf.cast(ids, tf.int32)

    def serve(self, inputs, tasks=None):
        import tensorflow as tf

        members = self.spec["members"]
        # A NUL character would end the text inside the tokenizer, which
        # silently drops the rest (`keras_prompt.tasks.text_inputs`).
        no_nul = tf.debugging.Assert(
            tf.reduce_all(tf.strings.regex_full_match(inputs, "[^\\x00]*")),
            [
                "`inputs` must not hold NUL characters (\\x00): the "
                "tokenizer would drop the rest of the text"
            ],
        )
        with tf.control_dependencies([self.load_state(), no_nul]):
            inputs = tf.identity(inputs)
        prompt_ids = None
        if tasks is not None:
            check = tf.debugging.assert_equal(
                tf.size(tasks),
                tf.size(inputs),
                message="`tasks` must name one task per input",
            )
            with tf.control_dependencies([check]):
                prompt_ids = self.task_ids(tasks)
        if members is not None:
            inputs = tf.repeat(inputs, len(members))
            prompt_ids = tf.tile(
                tf.constant(members, tf.int32),
                [tf.shape(inputs)[0] // len(members)],
            )
        if not self.model.generates_text:
            x = dict(self.model.preprocessor(inputs))
            if prompt_ids is not None:
                x["prompt_ids"] = prompt_ids
            outputs = self.model(x, training=False)
            if members is None:
                return {"probabilities": outputs}
            outputs = tf.reshape(
                outputs, [-1, len(members), self.model.num_classes]
            )
            return {
                "probabilities": tf.reduce_mean(outputs, axis=1),
                "member_probabilities": outputs,
            }
        outputs = _generate_in_chunks(
            self.model,
            self.step,
            inputs,
            prompt_ids,
            self.batch_size,
            self.max_length,
        )
        if members is None:
            return {"outputs": outputs}
        voted, rows = _vote(outputs, len(members))
        return {"outputs": voted, "member_outputs": rows}
