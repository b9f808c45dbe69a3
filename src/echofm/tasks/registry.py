"""The downstream tasks by name: ``TASKS`` and ``get_task(name)``.

Light (the task classes are imported on request), so that command-line help lists the
task names without loading torch.
"""

from __future__ import annotations

TASKS = ("ef", "view", "segment", "disease")


def get_task(name: str):
    """The Task object of ``name`` (ef, view, segment, disease)."""
    if name == "ef":
        from echofm.tasks.ef import EFTask

        return EFTask()
    if name == "view":
        from echofm.tasks.view import ViewTask

        return ViewTask()
    if name == "segment":
        from echofm.tasks.segmentation import SegmentationTask

        return SegmentationTask()
    if name == "disease":
        from echofm.tasks.disease import DiseaseTask

        return DiseaseTask()
    raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
