"""Test-session settings shared by the whole suite."""

import os
import tempfile

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `dtype="auto"` (every `from_preset`'s default) is float32 in the suite,
# whatever the machine: the tiny models are compared with float32
# references. Tests of the bfloat16 default set it themselves.
os.environ.setdefault("KERAS_PROMPT_BFLOAT16", "0")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared")
SHARED_TFDS_DIR = os.path.join(SHARED_DIR, "tfds")
SHARED_SST2_DIR = os.path.join(SHARED_DIR, "data", "sst2")
BACKEND = os.environ["KERAS_BACKEND"]


def pytest_collection_modifyitems(config, items):
    """On a backend other than TensorFlow, runs the tests marked
    `all_backends` only (the JAX lane, `KERAS_BACKEND=jax pytest`); the
    rest use what only TensorFlow has (SavedModel export, tf.distribute)
    or are checked once, on TensorFlow."""
    if BACKEND == "tensorflow":
        return
    kept = [item for item in items if item.get_closest_marker("all_backends")]
    dropped = [i for i in items if not i.get_closest_marker("all_backends")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def _session_temporary_directory(tmp_path_factory):
    """Points `tempfile` (and the CLI subprocesses, through `TMPDIR`) at a
    folder in pytest's own temporary tree for the session.

    TFDS leaves an empty `tmp*tfds` folder behind for every builder made
    for a dataset that is not prepared (`DatasetInfo.initialize_from_bucket`
    calls `mkdtemp` even when GCS is off), and the suite makes hundreds of
    them on purpose; they, and anything else left behind, go where pytest
    prunes old sessions instead of into the system's temporary directory.
    """
    folder = str(tmp_path_factory.mktemp("tempfile"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", folder)
        patch.setenv("TMPDIR", folder)
        yield


@pytest.fixture(scope="session", autouse=True)
def _shared_jax_compilation_cache(tmp_path_factory):
    """On JAX, the workers of one test session share XLA's compilations
    (JAX's persistent compilation cache, in pytest's temporary tree for
    the session, pruned with it): the tiny models of the suite compile the
    same operations in every worker."""
    if BACKEND != "jax":
        return
    import jax

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the session's workers
    jax.config.update(
        "jax_compilation_cache_dir", str(root / "jax_compilation_cache")
    )
    # Every compilation: the tiny models' each take well under a second.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
