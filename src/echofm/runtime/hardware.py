"""What the machine offers: CPU model and flags, cores, torch threads, CUDA devices.

Facts come from ``/proc/cpuinfo`` where it exists and from torch (``torch.cpu`` and
``torch.backends.cpu.get_cpu_capability()``), so a CPU that torch can use natively for
bf16 (AVX512_BF16 or AMX) is recognised even where ``/proc`` is missing (macOS, Windows).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

# The CPU flags that decide precision and speed, as /proc/cpuinfo names them.
CPU_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                         "amx_int8", "avx_vnni")


@dataclass(frozen=True)
class CudaDevice:
    """One CUDA device: its index, name, memory and whether it runs bf16 natively."""

    index: int
    name: str
    memory_gib: float
    bf16: bool


@dataclass(frozen=True)
class Hardware:
    """A snapshot of the machine. ``cpu_flags``: the flags of interest the CPU has."""

    cpu_model: str
    cpu_flags: tuple[str, ...]
    cpu_capability: str
    cores: int
    torch_threads: int
    cuda_devices: tuple[CudaDevice, ...] = field(default_factory=tuple)

    @property
    def cpu_bf16(self) -> bool:
        """True when the CPU multiplies bf16 natively (AVX512_BF16 or AMX); elsewhere
        bf16 is emulated and about 100x slower than fp32."""
        return bool({"avx512_bf16", "amx_bf16"} & set(self.cpu_flags))

    def cuda_device(self, device: str | torch.device) -> CudaDevice | None:
        """The CUDA device ``device`` names (``cuda`` means the current one), or None."""
        dev = torch.device(device)
        if dev.type != "cuda" or not self.cuda_devices:
            return None
        index = dev.index if dev.index is not None else 0
        return next((d for d in self.cuda_devices if d.index == index), None)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["cpu_bf16"] = self.cpu_bf16
        return out


def _proc_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; ("", empty) without it."""
    try:
        text = path.read_text()
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def _torch_cpu_flags() -> set[str]:
    """The flags torch itself reports (private helpers, present in torch >= 2.3)."""
    probes = {"avx2": "_is_avx2_supported", "avx512f": "_is_avx512_supported",
              "avx512_vnni": "_is_vnni_supported", "avx512_bf16": "_is_avx512_bf16_supported",
              "amx_tile": "_is_amx_tile_supported"}
    found = set()
    for flag, name in probes.items():
        fn = getattr(torch.cpu, name, None)
        try:
            if fn is not None and fn():
                found.add(flag)
        except Exception:  # noqa: BLE001 - a probe that fails tells nothing
            pass
    return found


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _cuda_devices() -> tuple[CudaDevice, ...]:
    if not torch.cuda.is_available():
        return ()
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        # bf16 tensor cores arrived with compute capability 8.0 (Ampere).
        devices.append(CudaDevice(index=i, name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                                  bf16=props.major >= 8))
    return tuple(devices)


def _detect() -> Hardware:
    model, flags = _proc_cpuinfo()
    flags |= _torch_cpu_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    return Hardware(cpu_model=model or platform.processor() or platform.machine(),
                    cpu_flags=tuple(f for f in CPU_FLAGS_OF_INTEREST if f in flags),
                    cpu_capability=capability, cores=available_cores(),
                    torch_threads=torch.get_num_threads(), cuda_devices=_cuda_devices())


@functools.lru_cache(maxsize=1)
def _cached() -> Hardware:
    return _detect()


def detect(refresh: bool = False) -> Hardware:
    """The machine's hardware facts (read once per process unless ``refresh``)."""
    if refresh:
        _cached.cache_clear()
    return _cached()
