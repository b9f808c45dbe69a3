"""In-memory phantom task datasets: labels equal the generator's truth, splits hold every view."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest

from echofm.datasets import DatasetError, phantom_task_dataset
from echofm.datasets.clips import ClipDataset
from echofm.datasets.phantom import phantom_label_maps, split_counts
from echofm.labels import IGNORE
from echofm.phantom import PhantomConfig, case_seed, generate_case

CONFIG = PhantomConfig(size=48, num_frames=20, fps=10.0)


@pytest.fixture(scope="module")
def data():
    return phantom_task_dataset(16, CONFIG, seed=3)


def test_targets_and_frames_are_the_generated_cases(data):
    assert len(data.samples) == 16 and data.name == "phantom"
    for i in (0, 5, 14):
        s = data.samples[i]
        view = CONFIG.views[i % len(CONFIG.views)]
        case = generate_case(case_seed(3, i), CONFIG, view=view)
        frames, fps = s.load_frames()
        assert np.array_equal(frames, case.frames) and fps == CONFIG.fps
        assert s.targets["view"] == view and s.targets["ef"] == pytest.approx(case.ef)
        assert s.targets["as_severity"] == case.truth["disease"]["as_severity"]
        assert s.meta["ed_frame"] == case.truth["ed_frames"][0]
    again = phantom_task_dataset(16, CONFIG, seed=3)
    assert all(np.array_equal(a.load_frames()[0], b.load_frames()[0]) for a, b in zip(data.samples, again.samples))


def test_every_split_holds_every_view(data):
    for split in ("train", "val", "test"):
        views = Counter(s.targets["view"] for s in data.split(split))
        assert set(views) == set(CONFIG.views) and len(set(views.values())) == 1
    assert data.counts() == {"train": 8, "val": 4, "test": 4}  # 4 per view: 2 / 1 / 1
    assert split_counts(10, (0.6, 0.2, 0.2)) == [6, 2, 2] and split_counts(3, (0.75, 0.125, 0.125)) == [1, 1, 1]
    assert split_counts(2, (0.75, 0.125, 0.125)) == [2, 0, 0] and split_counts(5, (1, 0, 0)) == [5, 0, 0]
    with pytest.raises(DatasetError, match="three non-negative fractions"):
        split_counts(4, (1.0, 0.0))


def test_label_maps_on_ed_es_frames_show_the_lv_beating(data):
    s = data.samples[0]
    frames, _ = s.load_frames()
    masks = s.load_masks(*frames.shape[1:3])
    case = generate_case(case_seed(3, 0), CONFIG, view=s.targets["view"])
    assert sorted(masks) == sorted(set(case.truth["ed_frames"]) | set(case.truth["es_frames"]))
    assert all(set(np.unique(m)) <= {0, 1, 2, 3} for m in masks.values())
    ed, es = s.meta["ed_frame"], s.meta["es_frame"]
    assert (masks[ed] == 1).sum() > (masks[es] == 1).sum()  # LV cavity larger at end-diastole
    # Resized on request (nearest neighbour keeps the class values).
    small = s.load_masks(24, 24)
    assert small[ed].shape == (24, 24) and set(np.unique(small[ed])) <= set(np.unique(masks[ed]))


def test_dense_lv_only_labels_feed_the_clip_dataset():
    data = phantom_task_dataset(4, CONFIG, seed=1, structures="lv", labelled="all")
    s = data.samples[1]
    masks = s.load_masks(48, 48)
    assert sorted(masks) == list(range(CONFIG.num_frames))
    assert set(np.unique(np.stack(list(masks.values())))) == {0, 1}
    item = ClipDataset(data.samples, num_frames=8, size=32, segmentation=True)[1]
    assert item["clips"].shape == (3, 8, 32, 32) and item["masks"].shape == (8, 32, 32)
    assert not (item["masks"] == IGNORE).any()  # every frame labelled
    restored = pickle.loads(pickle.dumps(s))  # DataLoader workers need picklable loaders
    assert np.array_equal(restored.load_frames()[0], s.load_frames()[0])


def test_label_mapping_and_bad_arguments():
    labels = np.arange(7, dtype=np.uint8).reshape(1, 7)
    assert phantom_label_maps(labels).tolist() == [[0, 1, 2, 3, 0, 0, 0]]
    assert phantom_label_maps(labels, "lv").tolist() == [[0, 1, 0, 0, 0, 0, 0]]
    with pytest.raises(DatasetError, match="structures"):
        phantom_label_maps(labels, "rv")
    with pytest.raises(DatasetError, match="labelled"):
        phantom_task_dataset(2, CONFIG, labelled="some")
    with pytest.raises(DatasetError, match="at least 1"):
        phantom_task_dataset(0, CONFIG)
