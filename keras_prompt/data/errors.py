"""Errors raised by `keras_prompt.data`."""


class DatasetNotPreparedError(FileNotFoundError):
    """The TFDS dataset of a task is not prepared in the given data dir.

    Raised by `keras_prompt.data.load_text_to_text` (and everything built on
    it) instead of a TFDS traceback or a download attempt. The message names
    the task, the TFDS dataset and version, and the data dir searched.

    Example:

    ```python
    import tempfile

    from keras_prompt.data import DatasetNotPreparedError
    from keras_prompt.data import load_text_to_text

    try:
        load_text_to_text("glue/rte", "train", data_dir=tempfile.mkdtemp())
    except DatasetNotPreparedError as error:
        print(error)
    ```
    """
