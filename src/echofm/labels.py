"""Label names and values, defined once: heart structures in label maps, echo views and
disease classes. Phantoms, datasets, tasks, predictions, plots and DICOM SEG all read them here.

Structure values 0..3 follow CAMUS (0 background, 1 LV cavity, 2 LV myocardium, 3 left
atrium), which is also what the public segmentation sets use (EchoNet-Dynamic traces use
1 only); 4..6 are the phantom's own extra structures. ``IGNORE`` marks unlabelled pixels
(a frame without a tracing) and is never a class. This module imports nothing heavy, so
command-line help can list these names without loading torch.
"""

from __future__ import annotations

# --- structures in label maps ---------------------------------------------------------------

BACKGROUND, LV_CAVITY, LV_MYOCARDIUM, LEFT_ATRIUM, RV_CAVITY, RIGHT_ATRIUM, AORTA = range(7)
IGNORE = 255

# value -> machine name (metrics keys, task classes, JSON outputs)
STRUCTURES: dict[int, str] = {
    BACKGROUND: "background",
    LV_CAVITY: "lv_cavity",
    LV_MYOCARDIUM: "lv_myocardium",
    LEFT_ATRIUM: "left_atrium",
    RV_CAVITY: "rv_cavity",
    RIGHT_ATRIUM: "right_atrium",
    AORTA: "aorta",
}
# value -> words for people (figure legends, DICOM SEG segment labels)
STRUCTURE_TITLES: dict[int, str] = {
    BACKGROUND: "Background",
    LV_CAVITY: "Left ventricle cavity",
    LV_MYOCARDIUM: "Left ventricle myocardium",
    LEFT_ATRIUM: "Left atrium",
    RV_CAVITY: "Right ventricle cavity",
    RIGHT_ATRIUM: "Right atrium",
    AORTA: "Aorta",
}
# Overlay colours (RGB in [0, 1]) of the segmentation classes, shared by figures and videos.
STRUCTURE_COLOURS: dict[int, tuple[float, float, float]] = {
    LV_CAVITY: (0.9, 0.2, 0.2),
    LV_MYOCARDIUM: (0.2, 0.8, 0.3),
    LEFT_ATRIUM: (0.25, 0.45, 1.0),
}
# The classes a segmentation task can learn (CAMUS's four), in label-value order.
SEGMENTATION_CLASSES: list[str] = [STRUCTURES[v] for v in (BACKGROUND, LV_CAVITY, LV_MYOCARDIUM, LEFT_ATRIUM)]

# --- views ----------------------------------------------------------------------------------

VIEWS = ("A4C", "A2C", "PLAX", "PSAX")  # apical 4- and 2-chamber, parasternal long and short axis
# How the study pipeline routes a view: apical views show the LV long axis (segmentation,
# EF), parasternal views the aortic valve (disease). A3C and A5C are for bundles trained on
# data that has them.
APICAL_VIEWS = ("A4C", "A2C", "A3C", "A5C")
PARASTERNAL_VIEWS = ("PLAX", "PSAX")
CAMUS_VIEWS = {"2CH": "A2C", "4CH": "A4C"}  # CAMUS file tag -> view
PEDIATRIC_VIEWS = ("A4C", "PSAX")  # the views EchoNet-Pediatric releases

# --- disease classes ------------------------------------------------------------------------

AS_GRADES = ("none", "mild", "moderate", "severe")  # aortic stenosis, 4 grades
AS3_CLASSES = ("none", "early", "significant")  # TMED-2's 3-class AS grouping
AR_CLASSES = ("absent", "present")  # aortic regurgitation
YES_NO = ("no", "yes")  # binary findings (LVH, reduced EF)
# TMED-2's spelling of each AS grade.
TMED_AS_LABELS = {"none": "no_AS", "mild": "mild_AS", "moderate": "moderate_AS", "severe": "severe_AS"}

