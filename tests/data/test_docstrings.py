"""The `Example:` code blocks of `keras_prompt.data` docstrings run."""

import importlib
import inspect
import os
import re

import pytest

from keras_prompt.data import registry

REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
SHARED_TFDS_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "tfds")

MODULES = [
    "keras_prompt.data.errors",
    "keras_prompt.data.evaluation",
    "keras_prompt.data.example",
    "keras_prompt.data.loading",
    "keras_prompt.data.metrics",
    "keras_prompt.data.registry",
    "keras_prompt.data.superglue",
    "keras_prompt.data.task",
]
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _examples():
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != (
                module_name
            ):
                continue
            for i, block in enumerate(CODE_BLOCK.findall(obj.__doc__ or "")):
                yield pytest.param(
                    inspect.cleandoc("\n" + block), id=f"{name}-{i}"
                )


EXAMPLES = list(_examples())


def test_public_api_has_examples():
    names = {param.id.rsplit("-", 1)[0] for param in EXAMPLES}
    for expected in [
        "TextToTextTask",
        "TextToTextExample",
        "DatasetNotPreparedError",
        "evaluate_generation",
        "load_text_to_text",
        "load_examples",
        "get_task",
        "list_tasks",
        "register_task",
        "superglue_average",
        "accuracy",
        "binary_f1",
        "macro_f1",
        "exact_match",
        "token_f1",
        "record_metrics",
        "multirc_metrics",
        "wsc_predicts_referent",
        "wsc_accuracy",
    ]:
        assert expected in names


@pytest.mark.skipif(
    not os.path.isdir(os.path.join(SHARED_TFDS_DIR, "glue", "sst2")),
    reason="the shared glue/sst2 data is needed by the loading examples",
)
@pytest.mark.parametrize("code", EXAMPLES)
def test_docstring_example_runs(code, monkeypatch, capsys):
    monkeypatch.setenv("TFDS_DATA_DIR", SHARED_TFDS_DIR)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    exec(compile(code, "<docstring example>", "exec"), {})
