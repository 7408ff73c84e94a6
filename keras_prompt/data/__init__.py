"""Text-to-text GLUE/SuperGLUE tasks from TFDS and their metrics.

Formats follow T5's preprocessors without the task-name prefix, as in the
Prompt Tuning paper (Lester et al., 2021). This package knows nothing about
models: evaluation only needs an object with `generate(list_of_str)`.
"""

from keras_prompt.data import metrics
from keras_prompt.data.errors import DatasetNotPreparedError
from keras_prompt.data.evaluation import evaluate_generation
from keras_prompt.data.example import TextToTextExample
from keras_prompt.data.glue import GLUE_TASKS
from keras_prompt.data.loading import load_examples
from keras_prompt.data.loading import load_text_to_text
from keras_prompt.data.registry import get_task
from keras_prompt.data.registry import list_tasks
from keras_prompt.data.registry import register_task
from keras_prompt.data.superglue import SUPERGLUE_TASKS
from keras_prompt.data.superglue import superglue_average
from keras_prompt.data.task import TextToTextTask

__all__ = [
    "DatasetNotPreparedError",
    "GLUE_TASKS",
    "SUPERGLUE_TASKS",
    "TextToTextExample",
    "TextToTextTask",
    "evaluate_generation",
    "get_task",
    "list_tasks",
    "load_examples",
    "load_text_to_text",
    "metrics",
    "register_task",
    "superglue_average",
]
