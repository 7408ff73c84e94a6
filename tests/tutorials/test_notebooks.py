"""The tutorial notebooks run top to bottom; two are stored with outputs.

Each notebook is executed with nbclient in a fresh `python3` kernel, with
`tutorials/` as the working directory and `KERAS_PROMPT_TUTORIAL_CI=1`, which
makes its PARAMETERS cell pick tiny settings, local data (`../shared/tfds`)
and models made on the spot. Anything a notebook writes goes to the test's
temporary directory (`KERAS_PROMPT_TUTORIAL_OUTPUT`), never the repository.
The executed copy is discarded: the outputs stored in `01_quickstart` and
`04_scale_tpu_xxl` (made by `tutorials/_store_outputs.py` with the settings
their notes give) are never rewritten by the tests.
"""

import os
import time

import pytest

nbformat = pytest.importorskip("nbformat")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
TUTORIALS_DIR = os.path.join(REPO_ROOT, "tutorials")
NOTEBOOKS = sorted(
    name for name in os.listdir(TUTORIALS_DIR) if name.endswith(".ipynb")
)
CELL_TIMEOUT_S = 600
#: Notebooks stored executed, so that a reader sees the results.
STORED_WITH_OUTPUTS = {"01_quickstart.ipynb", "04_scale_tpu_xxl.ipynb"}


def _read(name):
    with open(os.path.join(TUTORIALS_DIR, name), encoding="utf-8") as f:
        return nbformat.read(f, as_version=4)


def test_there_are_tutorials():
    assert NOTEBOOKS, f"no notebooks in {TUTORIALS_DIR}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_with_or_without_outputs(name):
    """Stored outputs only where a note says which settings made them, in
    execution order, without errors or TensorFlow's start-up logs."""
    notebook = _read(name)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    if name not in STORED_WITH_OUTPUTS:
        for index, cell in enumerate(code):
            assert cell.get("outputs") == [], (
                f"{name}: code cell {index} has outputs; clear them before "
                "committing (e.g. `jupyter nbconvert --clear-output "
                "--inplace`)"
            )
            assert cell.get("execution_count") is None, (
                f"{name}: code cell {index} has an execution count"
            )
        return
    notes = [
        c.source
        for c in notebook.cells
        if c.cell_type == "markdown"
        and "About the outputs stored in this notebook" in c.source
    ]
    assert len(notes) == 1, f"{name}: no note on the stored outputs"
    counts = [c.execution_count for c in code if c.execution_count]
    assert counts == list(range(1, len(counts) + 1)), counts
    shown = [o for c in code for o in c.outputs]
    assert any(o.output_type == "display_data" for o in shown), name
    for output in shown:
        assert output.output_type != "error", name
        assert output.get("name") != "stderr", name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_badge_and_one_parameters_cell(name):
    notebook = _read(name)
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    assert (
        "https://colab.research.google.com/github/keras-prompt/keras-prompt/"
        f"blob/main/tutorials/{name}" in first.source
    )
    tagged = [
        cell
        for cell in notebook.cells
        if "parameters" in cell.get("metadata", {}).get("tags", [])
    ]
    assert len(tagged) == 1, f"{name}: expected one `parameters` cell"
    assert 'os.environ.get("KERAS_PROMPT_TUTORIAL_CI") == "1"' in (
        tagged[0].source
    )
    # The CI switch lives in the parameters cell only.
    for cell in notebook.cells:
        if cell is not tagged[0] and cell.cell_type == "code":
            assert "if CI" not in cell.source, (
                f"{name}: CI switch outside the parameters cell:\n"
                + cell.source
            )


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("KERAS_PROMPT_TUTORIAL_CI", "1")
    monkeypatch.setenv("KERAS_PROMPT_TUTORIAL_OUTPUT", str(tmp_path))
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = _read(name)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": TUTORIALS_DIR}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{name} failed:\n{error}", pytrace=False)
    print(f"{name}: {time.perf_counter() - start:.1f} s")
