"""Single-pass prompt ensembles (Lester et al., 2021, section 6)."""

import numpy as np

from keras_prompt.serving.naming import as_texts
from keras_prompt.serving.prompt_bank import PromptBank


def majority_vote(outputs):
    """The most common answer of each row of `outputs` `(batch, members)`.

    Ties go to the answer of the earliest member among the tied ones, so
    the vote is deterministic (and the exported graph votes the same way).
    Returns `(winners, winning member indices)`.
    """
    winners, indices = [], []
    for row in outputs:
        counts = [sum(other == answer for other in row) for answer in row]
        best = int(np.argmax(counts))
        winners.append(row[best])
        indices.append(best)
    return winners, indices


class PromptEnsemble:
    """N prompts for one task, run as one batch of N copies of each input.

    Prompt tuning makes ensembles cheap: the members share the frozen model
    and differ only in their prompts, so every input is replicated once per
    member and the whole ensemble runs in a single forward (or generation)
    pass over a prompt bank. Generated answers are combined by majority
    vote (ties: the earliest member's answer), class probabilities by their
    mean.

    Args:
        bank: a `keras_prompt.serving.PromptBank` holding the members.
        members: list of task names of `bank`, the ensemble's prompts.
            Defaults to all of the bank's tasks.

    Example:

    ```python
    ensemble = keras_prompt.serving.PromptEnsemble.from_prompt_files(
        model, [f"sst2_seed{i}.prompt.safetensors" for i in range(5)]
    )
    ensemble.generate(["a gripping film"])  # majority of 5 prompts
    ```
    """

    def __init__(self, bank, members=None):
        if not isinstance(bank, PromptBank):
            raise TypeError(
                "`bank` must be a keras_prompt.serving.PromptBank. "
                f"Received: bank={type(bank).__name__}"
            )
        if members is None:
            members = bank.task_names
        if isinstance(members, str) or not members:
            raise ValueError(
                "`members` must be a non-empty list of the bank's task "
                f"names. Received: members={members!r}"
            )
        members = list(members)
        bank.task_ids(members)  # raises for unknown names
        if len(set(members)) != len(members):
            raise ValueError(
                f"`members` must not repeat a task. Received: members={members}"
            )
        self.bank = bank
        self.members = members

    @classmethod
    def from_prompt_files(cls, model, paths, capacity=None):
        """An ensemble of the prompt files `paths` on `model`'s backbone.

        The members are named `member_0`, `member_1`, ... in file order.
        """
        paths = list(paths)
        if not paths:
            raise ValueError(
                f"`paths` must list at least one prompt file. Received: "
                f"paths={paths}"
            )
        # The longest prompt sizes the bank (which refuses mixed lengths
        # where the family cannot mix them).
        prompt_length = max(
            model.read_prompt_file(p)[0]["prompt"].shape[-2] for p in paths
        )
        bank = PromptBank(
            model,
            capacity=capacity or max(2, len(paths)),
            prompt_length=prompt_length,
        )
        names = [f"member_{i}" for i in range(len(paths))]
        for name, path in zip(names, paths):
            bank.add_task(name, path)
        return cls(bank, names)

    @property
    def member_ids(self):
        """The bank slots of the members."""
        return self.bank.task_ids(self.members)

    @property
    def num_members(self):
        return len(self.members)

    def _replicated(self, inputs):
        texts = list(as_texts(inputs))
        replicated = [t for t in texts for _ in self.members]
        return texts, replicated, self.members * len(texts)

    def generate(
        self,
        inputs,
        max_length=None,
        stop_token_ids="auto",
        return_members=False,
    ):
        """Majority-voted generations, one per input, in one pass.

        `max_length` and `stop_token_ids` are as the task model's
        `generate`. With `return_members=True`, returns `(answers,
        member_answers)` where `member_answers[i][j]` is member `j`'s
        answer to input `i`.
        """
        texts, replicated, tasks = self._replicated(inputs)
        outputs = self.bank.generate(
            replicated,
            tasks,
            max_length=max_length,
            stop_token_ids=stop_token_ids,
        )
        n = self.num_members
        rows = [outputs[i * n : (i + 1) * n] for i in range(len(texts))]
        answers, _ = majority_vote(rows)
        return (answers, rows) if return_members else answers

    def predict(self, inputs, return_members=False):
        """Mean class probabilities `(batch, num_classes)` in one pass.

        With `return_members=True`, also returns the members' outputs
        `(batch, members, num_classes)`.
        """
        texts, replicated, tasks = self._replicated(inputs)
        outputs = np.asarray(self.bank.predict(replicated, tasks))
        outputs = outputs.reshape(len(texts), self.num_members, -1)
        mean = outputs.mean(axis=1)
        return (mean, outputs) if return_members else mean
