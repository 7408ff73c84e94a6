"""Test-session settings shared by the whole suite."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared")
SHARED_TFDS_DIR = os.path.join(SHARED_DIR, "tfds")
SHARED_SST2_DIR = os.path.join(SHARED_DIR, "data", "sst2")
