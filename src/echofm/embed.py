"""The batch job behind ``echofm embed``: many studies -> embedding files, an index, failures.

``embed_studies(sources, model, out_dir, config, options)`` reads every echo source under
``sources`` (the preprocessing of ``echofm prepare``), embeds each whole video window by
window (``inference.embed_frames``: windows as the model's input contract asks) and writes, per input, ``<id>_video.npy`` [D] (mean
over windows), ``<id>_frames.npy`` [W, T, D] (per-time-step embeddings of each window)
and, with ``tokens``, ``<id>_tokens.npy`` [W, T*L, D]. ``<id>`` is ``batch.input_id``
(the same ID prepare and predict give the same file). The job skeleton (resume, settings
fingerprint, index.csv, failures.csv, exit status) is ``echofm.batch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from echofm.batch import BatchJob, BatchOptions, BatchSummary, model_fingerprint, scan_sources
from echofm.errors import EchoFMError
from echofm.files import save_npy_atomic

PARTS = ("video", "frames")


@dataclass
class EmbedConfig:
    """What an embedding is: windows of every ``frame_step``-th frame (None: what the model's
    input contract asks for each source's frame rate), ``window_step`` apart (None: back to
    back), at most ``max_windows``; ``tokens`` also keeps the token embeddings (large);
    batch_size windows per forward pass; backend torch, or onnx (the model is then an
    ``echofm export`` folder or one of its .onnx files); mask_sector: blank and crop to the
    ultrasound sector (None: as the model's input contract says, ``contract.sector_masking``)."""

    frame_step: Optional[int] = None
    window_step: Optional[int] = None
    max_windows: Optional[int] = None
    batch_size: int = 4
    precision: str = "auto"
    device: str = "cpu"
    tokens: bool = False
    backend: str = "torch"
    mask_sector: Optional[bool] = None

    def __post_init__(self) -> None:
        for name in ("frame_step", "window_step", "max_windows", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


def embed_studies(sources: Sequence[str | Path], model, out_dir: str | Path,
                  config: Optional[EmbedConfig] = None, options: Optional[BatchOptions] = None) -> BatchSummary:
    """Embed every echo source under ``sources`` into ``out_dir``; ``model``: an EchoFM
    or anything ``load_model`` reads. A re-run skips inputs already embedded (and redoes
    those whose files are gone, or that lack tokens now asked for); a folder embedded by
    another model or other window or precision settings is refused."""
    from echofm.contract import sector_masking
    from echofm.inference import embed_frames, load_study
    from echofm.runtime import configure_threads, load_inference_model

    config = config or EmbedConfig()
    configure_threads()
    found = scan_sources(sources)  # before anything is created: a missing input leaves no folder
    if isinstance(model, (str, Path)):
        model = load_inference_model(model, config.backend, "encoder", config.device)
    model = model.eval().to(config.device)
    if config.tokens and getattr(model, "has_tokens", True) is False:
        raise EchoFMError(f"{model.path}: this export has no token output; export it again with --tokens")
    mask_sector = sector_masking(getattr(model, "contract", None), config.mask_sector)
    # Resuming into a folder embedded by another model or settings would mix incomparable vectors.
    settings = {"model": model_fingerprint(model), "mask_sector": mask_sector, "frame_step": config.frame_step,
                "window_step": config.window_step, "max_windows": config.max_windows, "precision": config.precision}
    if config.backend != "torch":
        settings["backend"] = config.backend
    job = BatchJob("embed", out_dir, settings, options,
                   expected_files=lambda record: _expected_files(record, config.tokens)).open()
    out = job.out
    for item in job.run(job.pending(found)):
        try:
            clip = load_study(item.source.path, model.cfg.img_size, mask_sector=mask_sector)
            emb = embed_frames(model, clip.frames, clip.fps, frame_step=config.frame_step,
                               window_step=config.window_step, max_windows=config.max_windows,
                               batch_size=config.batch_size, precision=config.precision, device=config.device,
                               keep_tokens=config.tokens, where=item.id)
        except (EchoFMError, ValueError, OSError, RuntimeError) as exc:
            # RuntimeError: a decoder or torch failing on one odd input must not end the batch.
            job.failed(item, exc)
            continue
        arrays = {"video": emb.video, "frames": emb.frames}
        if emb.tokens is not None:
            arrays["tokens"] = emb.tokens
        files = [f"{item.id}_{part}.npy" for part in arrays]
        for name, array in zip(files, arrays.values()):
            save_npy_atomic(out / name, np.asarray(array, dtype=np.float32))
        job.done(item, {"frames": clip.num_frames, "fps": clip.fps or "", "frame_step": emb.frame_step,
                        "windows": len(emb.starts),
                        "window_starts": " ".join(map(str, emb.starts)), "dim": int(emb.video.shape[-1]),
                        "tokens": int(emb.tokens is not None)}, files)
    return job.finish()


def _expected_files(record: dict, tokens: bool) -> Optional[list[str]]:
    """The files a finished embedding left; None when tokens are asked for now and the
    record has none (the input is embedded again)."""
    if tokens and not record.get("row", {}).get("tokens"):
        return None
    return record.get("files", [])
