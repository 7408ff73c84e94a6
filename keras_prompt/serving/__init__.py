"""Serving: prompt banks, single-pass prompt ensembles and SavedModel export.

- `PromptBank`: named tasks (separately trained prompts) on one frozen
  model, mixed freely within a batch.
- `PromptEnsemble`: N prompts of one task in one pass; majority vote or
  mean probability.
- `export_saved_model` / `update_exported_prompts`: TF SavedModels that
  take raw strings (and task names), and prompt-only updates that never
  re-export the backbone.
"""

from keras_prompt.serving.ensemble import PromptEnsemble
from keras_prompt.serving.ensemble import majority_vote
from keras_prompt.serving.export import export_saved_model
from keras_prompt.serving.export import read_manifest
from keras_prompt.serving.export import update_exported_prompts
from keras_prompt.serving.prompt_bank import PromptBank

__all__ = [
    "PromptBank",
    "PromptEnsemble",
    "export_saved_model",
    "majority_vote",
    "read_manifest",
    "update_exported_prompts",
]
