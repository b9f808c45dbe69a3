import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from echofm.datasets.cache import CacheDataset
from echofm.errors import EchoFMError
from echofm.batch import BatchOptions
from echofm.preprocess.prepare import prepare
from echofm.preprocess.transforms import PreprocessConfig


@pytest.fixture(scope="module")
def cache(tmp_path_factory, ybr_cine, lossless_still):
    out = tmp_path_factory.mktemp("cache")
    result = prepare([ybr_cine, lossless_still], out, PreprocessConfig(size=112), workers=1, options=BatchOptions(progress=False))
    assert result.done == 2
    return out


def test_items_are_model_layout_floats(cache):
    dataset = CacheDataset(cache, num_frames=8, stride=2, size=64)
    assert len(dataset) == 2
    for clip in dataset:
        assert clip.shape == (3, 8, 64, 64) and clip.dtype == torch.float32
        assert 0 <= clip.min() and clip.max() <= 1 and clip.max() > 0.2
        assert torch.equal(clip[0], clip[1])  # grayscale repeated to 3 channels


def test_still_wraps_and_windows_vary_by_epoch(cache):
    dataset = CacheDataset(cache, num_frames=4, stride=3, random_window=True)
    still = next(i for i, row in enumerate(dataset.rows) if row["is_still"] == "1")
    frames = dataset[still]
    assert frames.shape == (3, 4, 112, 112) and all(torch.equal(frames[:, 0], frames[:, t]) for t in range(4))
    cine = 1 - still
    first = dataset[cine]
    assert torch.equal(first, dataset[cine])  # reproducible within an epoch
    changed = False
    for epoch in range(1, 6):
        dataset.set_epoch(epoch)
        changed |= not torch.equal(first, dataset[cine])
    assert changed


def test_augmented_loader_batches(cache):
    dataset = CacheDataset(cache, num_frames=8, stride=1, augment=True)
    batch = next(iter(DataLoader(dataset, batch_size=2, num_workers=0)))
    assert batch.shape == (2, 3, 8, 112, 112) and 0 <= batch.min() and batch.max() <= 1
    plain = torch.stack([CacheDataset(cache, num_frames=8, stride=1)[i] for i in range(2)])
    assert not torch.equal(batch, plain)


def test_missing_manifest(tmp_path):
    with pytest.raises(EchoFMError, match="manifest.csv"):
        CacheDataset(tmp_path)
