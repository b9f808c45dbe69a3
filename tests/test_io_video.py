import av
import numpy as np
import pytest

from echofm.errors import ClipReadError
from echofm.io import read_clip
from echofm.io.clip import collapse_gray


def _encode(frames: np.ndarray, path, codec: str, fps: int) -> None:
    """Write RGB frames [T, H, W, 3] with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p" if codec == "libx264" else "yuvj420p"
        if codec == "libx264":
            stream.options = {"crf": "12"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("suffix,codec", [(".mp4", "libx264"), (".avi", "mjpeg")])
def test_reencoded_cine_reads_back(ybr_cine, tmp_path, suffix, codec):
    source = read_clip(ybr_cine)
    path = tmp_path / f"cine{suffix}"
    _encode(source.frames, path, codec, fps=30)
    clip = read_clip(path)
    assert clip.source_kind == "video" and clip.num_frames == source.num_frames
    assert clip.fps == pytest.approx(30.0, abs=0.01)
    decoded = clip.frames if clip.is_color else np.repeat(clip.frames[..., None], 3, -1)
    error = np.abs(decoded.astype(float) - source.frames).mean()
    assert error < 4.0, f"mean abs error {error:.2f} gray levels after a lossy round trip"


def test_gray_video_collapses_to_one_channel(tmp_path):
    rng = np.random.default_rng(0)
    gray = np.repeat(rng.integers(0, 255, (6, 64, 64, 1), dtype=np.uint8), 3, axis=-1)
    assert collapse_gray(gray).shape == (6, 64, 64)
    gray[3, 10, 10] = (255, 0, 0)  # a single coloured pixel in one frame keeps the colour
    assert collapse_gray(gray).ndim == 4


def test_garbage_video_raises(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(ClipReadError, match="broken.mp4"):
        read_clip(path)
