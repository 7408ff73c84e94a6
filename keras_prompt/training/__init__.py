"""Training prompts: the recipe's settings, the trainer, its callbacks.

`lester2021()` returns the paper's `Recipe` (`recipe`); `Recipe.fit` trains
a keras_prompt task (`trainer`: segments, resume, the run record) with the
three callbacks below (best-prompt selection, divergence guard, resumable
training checkpoints), on the data of `pipeline`, scored by `evaluation`.
`task_kinds` holds what training needs to know of each task class; seeding
and the example splits a recipe trains and scores on live here too.
"""

from keras_prompt.training.best_prompt_checkpoint import BestPromptCheckpoint
from keras_prompt.training.evaluation import exact_match_accuracy
from keras_prompt.training.evaluation import task_metrics
from keras_prompt.training.finite_guard import FiniteGuard
from keras_prompt.training.finite_guard import TrainingDivergedError
from keras_prompt.training.recipe import Recipe
from keras_prompt.training.recipe import lester2021
from keras_prompt.training.recipe import paper_recipe
from keras_prompt.training.seeding import set_random_seed
from keras_prompt.training.trainer import RecipeResult
from keras_prompt.training.training_checkpoint import PromptTrainingCheckpoint

__all__ = [
    "BestPromptCheckpoint",
    "FiniteGuard",
    "PromptTrainingCheckpoint",
    "Recipe",
    "RecipeResult",
    "TrainingDivergedError",
    "exact_match_accuracy",
    "lester2021",
    "paper_recipe",
    "set_random_seed",
    "task_metrics",
]
