"""Executes a tutorial and stores its outputs in the notebook file.

The notebooks whose results a reader should see on GitHub or on opening
them in Colab (curves, tables) are stored executed. Their settings cell is
left as a reader would run it; the settings the stored outputs came from
(`STORED` below: the same all-MiniLM-L6-v2 and GLUE SST-2, from local
copies, sized for a 2-core CPU) are put into an extra cell after it for
the run only, and a markdown cell of the notebook says what they were.
`tests/tutorials/test_notebooks.py` checks the stored outputs and still
executes every notebook in its CI mode, in memory, without rewriting them.

    python tutorials/_store_outputs.py 01_quickstart.ipynb
    python tutorials/_store_outputs.py 04_scale_tpu_xxl.ipynb
"""

import copy
import os
import re
import sys
import tempfile

import nbclient
import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_TFDS = os.path.join(os.path.dirname(HERE), "..", "shared", "tfds")

#: Per notebook: the overrides run after the settings cell, and how many
#: leading cells to run (None: all).
STORED = {
    "01_quickstart.ipynb": (
        "from keras_prompt.pretrained import minilm_preset_dir\n"
        "PRESET = minilm_preset_dir()\n"
        f"DATA_DIR = {os.path.abspath(SHARED_TFDS)!r}\n"
        "TRAIN_EXAMPLES, VAL_EXAMPLES = 4_000, None\n"
        "EPOCHS, SEQUENCE_LENGTH = 3, 64\n"
        "OUTPUT_DIR = {output!r}\n"
        "os.makedirs(OUTPUT_DIR, exist_ok=True)\n",
        None,
    ),
    # The planner's tables and plot; training needs an accelerator and
    # the XXL checkpoint.
    "04_scale_tpu_xxl.ipynb": ("OUTPUT_DIR = {output!r}\n", 13),
}


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def clean_streams(outputs):
    """Keras' progress bar redraws its line with `\\r` and backspaces: keep
    what a terminal would finally show, one output per stream."""
    merged = []
    for output in outputs:
        if output.get("output_type") != "stream":
            merged.append(output)
            continue
        if merged and merged[-1].get("name") == output.get("name"):
            merged[-1].text += output.text
        else:
            merged.append(copy.deepcopy(output))
    for output in merged:
        if output.get("output_type") == "stream":
            text = ANSI.sub("", output.text).replace("\x08", "")
            lines = [line.split("\r")[-1] for line in text.split("\n")]
            output.text = "\n".join(lines)
    return merged


def parameters_index(notebook):
    for index, cell in enumerate(notebook.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return index
    raise ValueError("no `parameters` cell")


def store(name):
    path = os.path.join(HERE, name)
    notebook = nbformat.read(path, as_version=4)
    overrides, count = STORED[name]
    with tempfile.TemporaryDirectory() as output:
        run = copy.deepcopy(notebook)
        if count is not None:
            run.cells = run.cells[:count]
        at = parameters_index(run) + 1
        run.cells.insert(
            at, nbformat.v4.new_code_cell(overrides.format(output=output))
        )
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        env.pop("KERAS_PROMPT_TUTORIAL_CI", None)
        os.environ.update(env)
        nbclient.NotebookClient(
            run,
            timeout=3600,
            kernel_name="python3",
            resources={"metadata": {"path": HERE}},
        ).execute()
        del run.cells[at]
    if notebook.nbformat_minor < 5:  # cell ids came with nbformat 4.5
        for cell in notebook.cells:
            cell.pop("id", None)
    counter = 0
    for cell, done in zip(notebook.cells, run.cells):
        if cell.cell_type != "code":
            continue
        counter += 1
        # No errors, and no TensorFlow start-up logs (stderr).
        cell.outputs = clean_streams(
            [
                o
                for o in done.outputs
                if o.get("output_type") != "error"
                and o.get("name") != "stderr"
            ]
        )
        cell.execution_count = counter
    for cell in notebook.cells[len(run.cells) :]:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    print(f"stored the outputs of {name}")


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(STORED):
        store(name)
