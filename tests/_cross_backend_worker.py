"""Runs in a subprocess on the backend it is given (the backend is fixed
when Keras starts):

    python tests/_cross_backend_worker.py BACKEND FROM_FOLDER TO_FOLDER

loads the models another backend saved into FROM_FOLDER (prints
`RESULT {json}`, see `cross_backend.load`), then saves its own into
TO_FOLDER.
"""

import json
import os
import sys

BACKEND, FROM_FOLDER, TO_FOLDER = sys.argv[1:4]
os.environ["KERAS_BACKEND"] = BACKEND
os.environ["KERAS_PROMPT_BFLOAT16"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from tests import cross_backend  # noqa: E402

if __name__ == "__main__":
    assert keras.config.backend() == BACKEND, keras.config.backend()
    result = cross_backend.load(FROM_FOLDER)
    cross_backend.save(TO_FOLDER)
    print("RESULT " + json.dumps(result), flush=True)
