"""Downstream tasks: EF regression, view classification, chamber segmentation, disease.

``finetune(data, init, FinetuneConfig(...), out_dir)`` adapts an encoder and writes a
run; ``evaluate(run_dir, data, split, out_dir)`` scores it; ``load_task_model(run_dir)``
gives the adapted model back for inference.
"""

from __future__ import annotations

from echofm.tasks.registry import TASKS, get_task


def __getattr__(name: str):
    # Lazy public names: importing echofm.tasks stays light (no torch data loading) until used.
    if name in ("finetune", "finetune_and_evaluate"):
        from echofm.tasks import finetuning

        return getattr(finetuning, name)
    if name in ("evaluate", "FinetuneConfig", "FinetuneResult"):
        from echofm.tasks import engine

        return getattr(engine, name)
    if name in ("TaskModel", "TaskSpec", "load_task_model", "save_task_model"):
        from echofm.tasks import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module 'echofm.tasks' has no attribute {name!r}")


__all__ = ["TASKS", "get_task", "finetune", "evaluate", "finetune_and_evaluate", "FinetuneConfig", "FinetuneResult", "TaskModel",
           "TaskSpec", "load_task_model", "save_task_model"]
