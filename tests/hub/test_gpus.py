"""The GPU allocator with fake nvidia-smi output (no GPU needed)."""

import os
import stat

import pytest

from speckle_hub import gpus
from speckle_hub.gpus import Gpu, GpuAllocator, parse_nvidia_smi

FOUR = """\
0, NVIDIA H100 80GB HBM3, 1200, 3
1, NVIDIA H100 80GB HBM3, 500, 0
2, NVIDIA A100-SXM4-40GB, 30000, 95
3, NVIDIA H100 80GB HBM3, [N/A], [N/A]
"""


def allocator(text=FOUR, policy="auto", devices="all"):
    found = parse_nvidia_smi(text)
    return GpuAllocator(detect_fn=lambda: found, policy=policy, devices=devices)


def test_parse_nvidia_smi_reads_index_name_memory_and_load():
    found = parse_nvidia_smi(FOUR + "WARNING: infoROM is corrupted at gpu 0000:01:00.0\n")
    assert [g.index for g in found] == [0, 1, 2, 3]
    assert found[0] == Gpu(0, "NVIDIA H100 80GB HBM3", 1200.0, 3.0)
    assert found[3].memory_used_mib == 0.0 and found[3].utilization == 0.0  # [N/A]


def test_parse_keeps_units_and_commas_in_names():
    found = parse_nvidia_smi("0, Tesla V100, PCIe 16GB, 100 MiB, 7 %\n")
    assert found == [Gpu(0, "Tesla V100, PCIe 16GB", 100.0, 7.0)]


def test_each_server_gets_its_own_gpu_while_there_are_enough():
    a = allocator()
    got = [a.assign(f"u{i}/").gpu.index for i in range(4)]
    assert sorted(got) == [0, 1, 2, 3]
    # the free ones go least loaded first: 3 (idle, no memory), 1, 0, then the busy A100
    assert got == [3, 1, 0, 2]


def test_when_all_are_taken_the_least_loaded_is_shared():
    a = allocator()
    for i in range(4):
        a.assign(f"u{i}/")
    fifth = a.assign("u4/")
    assert fifth.gpu.index == 3  # one server each: the idlest
    sixth = a.assign("u5/")
    assert sixth.gpu.index == 1
    assert a.users_of(3) == 2 and a.users_of(1) == 2


def test_release_on_stop_frees_the_gpu():
    a = allocator()
    first = a.assign("alice/").gpu.index
    a.release("alice/")
    assert a.users_of(first) == 0
    assert a.assign("bob/").gpu.index == first
    a.release("nobody/")  # releasing twice or unknown keys is harmless


def test_reassigning_the_same_server_does_not_count_twice():
    a = allocator()
    a.assign("alice/")
    a.assign("alice/")
    assert sum(a.users_of(i) for i in range(4)) == 1


def test_a_users_choice_wins_and_a_wrong_one_is_refused():
    a = allocator()
    assert a.assign("alice/", choice=2).gpu.index == 2
    with pytest.raises(ValueError, match="no GPU 7"):
        a.assign("bob/", choice=7)


def test_env_names_the_gpu_or_says_cpu():
    a = allocator()
    env = a.assign("alice/", choice=2).env
    assert env == {"CUDA_VISIBLE_DEVICES": "2", "SPECKLE_GPU_NAME": "NVIDIA A100-SXM4-40GB"}
    none = allocator(text="").assign("bob/")
    assert none.gpu is None
    assert none.env == {"CUDA_VISIBLE_DEVICES": "", "SPECKLE_GPU_NAME": "CPU"}


def test_policies_cpu_shared_and_device_subset():
    assert allocator(policy="cpu").assign("a/").gpu is None
    shared = allocator(policy="shared")
    assert [shared.assign(f"u{i}/").gpu.index for i in range(3)] == [3, 1, 0]
    subset = allocator(devices=[0, 2])
    assert {subset.assign(f"u{i}/").gpu.index for i in range(2)} == {0, 2}
    assert subset.assign("u9/").gpu.index in (0, 2)


def test_adopt_after_hub_restart_counts_the_running_server():
    a = allocator()
    a.adopt("alice/", 3)
    assert a.assign("bob/").gpu.index != 3


def test_detect_runs_a_fake_nvidia_smi(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\ncat <<'X'\n0, NVIDIA H100 80GB HBM3, 10, 1\n1, NVIDIA H100 80GB HBM3, 20, 2\nX\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    found = gpus.detect(str(fake), use_nvml=False)
    assert [g.index for g in found] == [0, 1]
    assert gpus.detect(str(tmp_path / "absent"), use_nvml=False) == []
    broken = tmp_path / "broken-smi"
    broken.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    broken.chmod(0o755)
    assert gpus.detect(str(broken), use_nvml=False) == []


def test_this_machine_without_gpu_detects_none_or_real_ones():
    found = gpus.detect()
    assert isinstance(found, list)
    if not os.path.exists("/dev/nvidiactl"):
        assert found == []
