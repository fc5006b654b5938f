"""Training (layer 4): recipes and resumable state (`recipes`), tasks bundling a model with its data
(`tasks`), and the loop with its local / Ray Train launchers (`loop`)."""

from .recipes import RECIPES, Recipe, TrainState, build_optimizer, build_scheduler, get_recipe
from .tasks import TASKS, RegionCaptionTask, create_task, load_trained_model

__all__ = ["RECIPES", "Recipe", "TrainState", "build_optimizer", "build_scheduler", "get_recipe",
           "TASKS", "RegionCaptionTask", "create_task", "load_trained_model"]
