"""Label names and values live in echofm.labels only, and the phantom, datasets and tasks use them."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import echofm
from echofm import labels
from echofm.datasets.phantom import phantom_label_maps
from echofm.phantom import PhantomConfig, generate_case
from echofm.tasks.disease import DiseaseTask
from echofm.tasks.metrics import dice_iou

SRC = Path(echofm.__file__).parent
# Names that, assigned anywhere but labels.py, would be a second definition of a label.
LABEL_NAMES = {"BACKGROUND", "LV_CAVITY", "LV_MYOCARDIUM", "LEFT_ATRIUM", "RV_CAVITY", "RIGHT_ATRIUM", "AORTA",
               "IGNORE", "VIEWS", "LABELS", "CLASS_NAMES", "STRUCTURES", "STRUCTURE_COLOURS", "AS_SEVERITIES",
               "AS4_CLASSES", "AS3_CLASSES", "AR_CLASSES", "TMED_DIAGNOSIS"}


def _assigned_names(tree: ast.AST):
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    yield leaf.id


def test_no_module_but_labels_defines_a_label():
    doubles = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "labels.py" and path.parent == SRC:
            continue
        names = set(_assigned_names(ast.parse(path.read_text(), str(path)))) & LABEL_NAMES
        doubles += [f"{path.relative_to(SRC)}: {name}" for name in sorted(names)]
    assert not doubles, "label names defined outside echofm/labels.py:\n" + "\n".join(doubles)


def test_phantom_label_maps_use_the_label_values():
    case = generate_case(5, PhantomConfig(size=48, num_frames=8, fps=10.0), view="A4C")
    assert case.truth["labels"] == {str(k): v for k, v in labels.STRUCTURES.items()}
    present = set(np.unique(case.labels).tolist())
    assert {labels.LV_CAVITY, labels.LV_MYOCARDIUM, labels.LEFT_ATRIUM} <= present <= set(labels.STRUCTURES)
    chambers = phantom_label_maps(case.labels, "chambers")
    assert set(np.unique(chambers).tolist()) == set(range(len(labels.SEGMENTATION_CLASSES)))
    assert np.array_equal(chambers == labels.LV_CAVITY, case.labels == labels.LV_CAVITY)
    assert set(np.unique(phantom_label_maps(case.labels, "lv")).tolist()) == {labels.BACKGROUND, labels.LV_CAVITY}


def test_tasks_name_classes_from_labels():
    task = DiseaseTask()
    assert task.classes_for("as4") == list(labels.AS_GRADES)
    assert task.classes_for("ar") == list(labels.AR_CLASSES)
    pred = np.zeros((2, 4, 4), np.uint8)
    pred[:, :2, :2] = labels.LEFT_ATRIUM
    scores = dice_iou(pred, pred.copy())
    assert scores["dice"]["left_atrium"] == 1.0 and set(scores["dice"]) == set(labels.SEGMENTATION_CLASSES[1:])
