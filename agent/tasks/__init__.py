"""Batched, vectorized tasks (see base.py for the interface, registry.py for the list)."""

from agent.tasks.base import BatchedTask, StepResult
from agent.tasks.registry import family_classes, get_task_class, make_task, register, task_names

__all__ = ["BatchedTask", "StepResult", "family_classes", "get_task_class", "make_task", "register", "task_names"]
