"""Disease detection and grading: aortic stenosis, aortic regurgitation, generic labels.

Label schemes (``--labels``):

- ``as4``: aortic stenosis none / mild / moderate / severe. TMED-2's ``mildtomod_AS``
  counts as mild here (it is below moderate).
- ``as3``: the common 3-class grouping (as in TMED-2): none / early (mild and
  mild-to-moderate) / significant (moderate and severe).
- ``ar``: aortic regurgitation absent / present; ``none``, ``no``, ``0``, ``false`` and
  ``trace`` count as absent, any other grade (mild, moderate, severe, 1, yes) as present.
- ``multiclass``: the raw labels as classes; ``multilabel``: ``;``- or ``|``-separated
  class names per sample, one sigmoid output each.

Raw AS spellings accepted: TMED-2's ``no_AS``, ``mild_AS``, ``mildtomod_AS``,
``moderate_AS``, ``severe_AS``; plain ``none``/``no``/``normal``, ``mild``,
``mild-to-moderate``, ``moderate``, ``severe``; or grades 0-3.
"""

from __future__ import annotations

from typing import Optional

from echofm.choices import DISEASE_SCHEMES as SCHEMES
from echofm.labels import AR_CLASSES, AS3_CLASSES, AS_GRADES
from echofm.tasks.classification import ClassificationTask


# Normalised raw spelling -> fine AS grade (mild-to-moderate kept apart until a scheme groups it).
_AS_GRADES = {
    "no_as": "none", "no": "none", "none": "none", "normal": "none", "0": "none", "absent": "none",
    "mild_as": "mild", "mild": "mild", "1": "mild",
    "mildtomod_as": "mildtomod", "mildtomod": "mildtomod", "mild-to-moderate": "mildtomod",
    "mild_to_moderate": "mildtomod", "mild-moderate": "mildtomod",
    "moderate_as": "moderate", "moderate": "moderate", "2": "moderate",
    "severe_as": "severe", "severe": "severe", "3": "severe",
}
AS4_GROUPING = {"none": "none", "mild": "mild", "mildtomod": "mild", "moderate": "moderate", "severe": "severe"}
AS3_GROUPING = {"none": "none", "mild": "early", "mildtomod": "early", "moderate": "significant",
                "severe": "significant"}
_AR_ABSENT = {"none", "no", "0", "false", "absent", "trace", "trivial", "no_ar", "0.0"}
_AR_PRESENT = {"mild", "moderate", "severe", "yes", "1", "true", "present", "mild_ar", "moderate_ar",
               "severe_ar", "2", "3", "1.0"}


def as_grade(raw) -> Optional[str]:
    """Raw AS label -> none / mild / mildtomod / moderate / severe (None if unknown)."""
    return _AS_GRADES.get(str(raw).strip().lower())


def map_disease_label(raw, scheme: str) -> Optional[str]:
    """Raw label -> class name under ``scheme`` (None when it has no class there)."""
    if scheme == "as4":
        grade = as_grade(raw)
        return AS4_GROUPING[grade] if grade else None
    if scheme == "as3":
        grade = as_grade(raw)
        return AS3_GROUPING[grade] if grade else None
    if scheme == "ar":
        text = str(raw).strip().lower()
        return "absent" if text in _AR_ABSENT else "present" if text in _AR_PRESENT else None
    text = str(raw).strip()
    return text or None


class DiseaseTask(ClassificationTask):
    name = "disease"
    default_target = "label"

    def scheme(self, options: dict) -> str:
        scheme = options.get("labels") or "multiclass"
        if scheme not in SCHEMES:
            raise ValueError(f"disease label scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
        return scheme

    def classes_for(self, scheme: str) -> Optional[list[str]]:
        classes = {"as4": AS_GRADES, "as3": AS3_CLASSES, "ar": AR_CLASSES}.get(scheme)
        return list(classes) if classes else None

    def map_label(self, raw, scheme: str) -> Optional[str]:
        return map_disease_label(raw, scheme)
