"""View classification (video level): A4C, A2C, PLAX, PSAX ... from any labelled set.

Classes are the view names found in the training split, spelled as the dataset spells
them after trimming and upper-casing (``a4c`` and ``A4C`` are one class).
"""

from __future__ import annotations

from typing import Optional

from echofm.tasks.classification import ClassificationTask


class ViewTask(ClassificationTask):
    name = "view"
    default_target = "view"

    def scheme(self, options: dict) -> str:
        return "multiclass"

    def map_label(self, raw, scheme: str) -> Optional[str]:
        text = str(raw).strip().upper()
        return text or None
