"""One preprocessed text-to-text example plus what evaluation needs."""

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class TextToTextExample:
    """A text-to-text example together with its evaluation metadata.

    `inputs` and `targets` are what a model is trained on. The remaining
    fields are what the task's metrics need beyond the target string.

    Args:
        inputs: str. The model input text.
        targets: str. The target text; `""` for unlabeled (test) records.
        label: int or None. The class index for classification tasks and for
            WSC (1 when `targets` is the pronoun's referent), `None` when the
            record is unlabeled or the task has no class label.
        group: tuple or None. Evaluation grouping key: `(paragraph, question)`
            indices for MultiRC, `(passage, query)` indices for ReCoRD.
        answers: tuple of str or None. All acceptable answers (ReCoRD).

    Example:

    ```python
    from keras_prompt.data import TextToTextExample

    example = TextToTextExample("sentence: a gem .", "positive", label=1)
    assert example.is_labeled
    ```
    """

    inputs: str
    targets: str
    label: Optional[int] = None
    group: Optional[tuple] = None
    answers: Optional[tuple] = None

    @property
    def is_labeled(self):
        """Whether the example carries a gold label/answer to score against."""
        return self.label is not None or bool(self.answers)
