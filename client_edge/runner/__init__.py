"""Local model runners. ``base`` is torch-free; implementations import their framework lazily."""

from client_edge.runner.base import ModelRunner, StepOutput, TeacherForced

__all__ = ["ModelRunner", "StepOutput", "TeacherForced"]
