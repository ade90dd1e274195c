"""NVIDIA GPUs on the hub machine: detect them, give each user server one, release it on stop.

Detection asks NVML (``pynvml``, from the ``nvidia-ml-py`` package) when it can be imported and
answers, else ``nvidia-smi --query-gpu=index,name,memory.used,utilization.gpu
--format=csv,noheader,nounits``. No driver, no tool, or any error means "no GPU": the hub then runs
everything on the CPU.

Policy ``auto``: a server gets a GPU no other server holds while one is free (the least busy of
the free ones); when every GPU is taken, the least loaded one is shared (fewest servers on it,
then lowest utilization, then least memory used). ``shared`` always picks the least loaded GPU;
``cpu`` gives none. The server sees only its GPU (``CUDA_VISIBLE_DEVICES``) and its name
(``SPECKLE_GPU_NAME``, ``"CPU"`` when none).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass, field

QUERY = ["--query-gpu=index,name,memory.used,utilization.gpu", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class Gpu:
    """One GPU as the driver reports it (memory in MiB, utilization in percent)."""

    index: int
    name: str
    memory_used_mib: float = 0.0
    utilization: float = 0.0


def _number(text: str) -> float:
    """nvidia-smi numbers: '1234', '1234 MiB', '35 %', or '[N/A]' (taken as 0)."""
    text = text.strip().split(" ")[0]
    try:
        return float(text)
    except ValueError:
        return 0.0


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=index,name,memory.used,utilization.gpu --format=csv,noheader``.

    Lines that do not hold four fields with an integer index are skipped (driver warnings).
    """
    gpus = []
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < 4:
            continue
        # a GPU name may itself hold a comma: index first, the two numbers last
        index, name, mem, util = parts[0].strip(), ",".join(parts[1:-2]).strip(), parts[-2], parts[-1]
        if not index.isdigit():
            continue
        gpus.append(Gpu(int(index), name, _number(mem), _number(util)))
    return gpus


def query_nvidia_smi(nvidia_smi: str = "nvidia-smi", timeout: float = 10.0) -> list[Gpu]:
    exe = shutil.which(nvidia_smi)
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, *QUERY], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return parse_nvidia_smi(out.stdout)


def query_nvml() -> list[Gpu] | None:
    """GPUs through NVML, or None when pynvml is missing or the driver does not answer."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20
            util = pynvml.nvmlDeviceGetUtilizationRates(h).gpu
            gpus.append(Gpu(i, name, float(mem), float(util)))
        return gpus
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def detect(nvidia_smi: str = "nvidia-smi", use_nvml: bool = True) -> list[Gpu]:
    """The machine's NVIDIA GPUs, [] when there are none (or no driver answers)."""
    if use_nvml:
        gpus = query_nvml()
        if gpus is not None:
            return gpus
    return query_nvidia_smi(nvidia_smi)


@dataclass
class Assignment:
    gpu: Gpu | None

    @property
    def env(self) -> dict[str, str]:
        if self.gpu is None:
            return {"CUDA_VISIBLE_DEVICES": "", "SPECKLE_GPU_NAME": "CPU"}
        return {"CUDA_VISIBLE_DEVICES": str(self.gpu.index), "SPECKLE_GPU_NAME": self.gpu.name}


@dataclass
class GpuAllocator:
    """Hands GPUs to servers (keys such as ``"alice/"``); one instance per hub process.

    Parameters
    ----------
    detect_fn : callable
        Returns the current list of :class:`Gpu` (fresh load figures at every assignment).
    policy : {"auto", "shared", "cpu"}
    devices : "all" or list of int
        The GPU indices the hub may hand out.
    """

    detect_fn: object = detect
    policy: str = "auto"
    devices: object = "all"
    holders: dict = field(default_factory=dict)  # key -> gpu index
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def gpus(self) -> list[Gpu]:
        if self.policy == "cpu":
            return []
        found = self.detect_fn()
        if self.devices != "all":
            found = [g for g in found if g.index in set(self.devices)]
        return sorted(found, key=lambda g: g.index)

    def users_of(self, index: int) -> int:
        return sum(1 for i in self.holders.values() if i == index)

    def _least_loaded(self, gpus: list[Gpu]) -> Gpu:
        return min(gpus, key=lambda g: (self.users_of(g.index), g.utilization, g.memory_used_mib, g.index))

    def assign(self, key: str, choice: int | None = None, gpus: list[Gpu] | None = None) -> Assignment:
        """Give ``key`` a GPU (or none). ``choice`` is a GPU index the user picked on the form."""
        with self._lock:
            if key in self.holders:
                self.holders.pop(key)
            gpus = self.gpus() if gpus is None else gpus
            if not gpus:
                return Assignment(None)
            by_index = {g.index: g for g in gpus}
            if choice is not None:
                if choice not in by_index:
                    raise ValueError(f"there is no GPU {choice} on this hub (have: {sorted(by_index)})")
                gpu = by_index[choice]
            elif self.policy == "auto":
                free = [g for g in gpus if self.users_of(g.index) == 0]
                gpu = self._least_loaded(free or gpus)
            else:
                gpu = self._least_loaded(gpus)
            self.holders[key] = gpu.index
            return Assignment(gpu)

    def adopt(self, key: str, index: int) -> None:
        """Record a GPU already held by a running server (after a hub restart)."""
        with self._lock:
            self.holders[key] = index

    def release(self, key: str) -> None:
        with self._lock:
            self.holders.pop(key, None)

    def describe(self, gpus: list[Gpu] | None = None) -> list[dict]:
        """Per GPU: index, name, servers on it, utilization, for the spawn form."""
        gpus = self.gpus() if gpus is None else gpus
        return [
            {"index": g.index, "name": g.name, "servers": self.users_of(g.index),
             "utilization": g.utilization, "memory_used_mib": g.memory_used_mib}
            for g in gpus
        ]


_ALLOCATOR: GpuAllocator | None = None


def allocator(policy: str = "auto", devices="all", nvidia_smi: str = "nvidia-smi") -> GpuAllocator:
    """The hub-wide allocator (created at first use with the hub's settings)."""
    global _ALLOCATOR
    if _ALLOCATOR is None:
        _ALLOCATOR = GpuAllocator(detect_fn=lambda: detect(nvidia_smi), policy=policy, devices=devices)
    return _ALLOCATOR
