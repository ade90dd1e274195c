"""speckle.site: the one place the site configuration is read, with one set of defaults."""

import re
from pathlib import Path

from speckle.site import DEFAULT_UPLOAD_CHUNK_BYTES, DEFAULT_UPLOAD_QUOTA_BYTES, SiteConfig, site

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("SPECKLE_HUB_MODE", "SPECKLE_DATA_DIRS", "SPECKLE_UPLOAD_DIR", "SPECKLE_UPLOAD_QUOTA_BYTES",
         "SPECKLE_UPLOAD_CHUNK_BYTES", "SPECKLE_RESULTS_DIR", "SPECKLE_SERVER_ROOT", "SPECKLE_BASE_URL",
         "SPECKLE_GPU_NAME", "CUDA_VISIBLE_DEVICES", "JUPYTERHUB_SERVICE_PREFIX",
         "SPECKLE_MONITOR_URL", "SPECKLE_MONITOR_RESULTS")


def test_everything_the_hub_sets_is_read(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    config = site({
        "SPECKLE_HUB_MODE": "isolated", "SPECKLE_DATA_DIRS": f"{a}:{b}::{a}",
        "SPECKLE_UPLOAD_DIR": str(tmp_path / "up"), "SPECKLE_UPLOAD_QUOTA_BYTES": "12345",
        "SPECKLE_UPLOAD_CHUNK_BYTES": "1048576", "SPECKLE_RESULTS_DIR": str(tmp_path / "res"),
        "SPECKLE_SERVER_ROOT": str(tmp_path), "JUPYTERHUB_SERVICE_PREFIX": "/user/ana",
        "SPECKLE_GPU_NAME": "NVIDIA H100", "CUDA_VISIBLE_DEVICES": "GPU-1234",
        "SPECKLE_MONITOR_URL": "http://127.0.0.1:8082/services/beamtime",
        "SPECKLE_MONITOR_RESULTS": str(tmp_path / "beamtime")})
    assert config.mode == "isolated"
    assert config.data_dirs == (a, b) and config.existing_data_dirs() == [a]
    assert (config.upload_dir, config.upload_quota_bytes, config.upload_chunk_bytes) == (
        tmp_path / "up", 12345, 2**20)
    assert (config.results_dir, config.server_root) == (tmp_path / "res", tmp_path)
    assert config.base_url == "/user/ana/"
    assert config.gpu_name == "NVIDIA H100" and not config.gpu_hidden
    assert config.monitor_url == "http://127.0.0.1:8082/services/beamtime/"
    assert config.monitor_results == tmp_path / "beamtime"
    assert site({"SPECKLE_BASE_URL": "x/", "JUPYTERHUB_SERVICE_PREFIX": "/user/ana/"}).base_url == "/x/"


def test_defaults_outside_a_hub(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = site({})
    assert config == SiteConfig(upload_dir=tmp_path / "speckle-uploads",
                                results_dir=tmp_path / "speckle-results", server_root=tmp_path)
    assert config.upload_quota_bytes == DEFAULT_UPLOAD_QUOTA_BYTES == 50 * 10**9
    assert config.upload_chunk_bytes == DEFAULT_UPLOAD_CHUNK_BYTES
    assert config.monitor_url is None and config.base_url == "/"
    # the hub's "no GPU": a name of CPU and no visible device
    assert site({"SPECKLE_GPU_NAME": "CPU", "CUDA_VISIBLE_DEVICES": ""}).gpu_name == ""
    assert site({"CUDA_VISIBLE_DEVICES": "-1"}).gpu_hidden
    assert site({"SPECKLE_UPLOAD_QUOTA_BYTES": "20GB"}).upload_quota_bytes == DEFAULT_UPLOAD_QUOTA_BYTES
    assert site({"SPECKLE_UPLOAD_CHUNK_BYTES": "10"}).upload_chunk_bytes == DEFAULT_UPLOAD_CHUNK_BYTES
    assert "not a number of bytes" in caplog.text and "is below" in caplog.text


def test_nothing_else_reads_the_site_variables():
    """The library, the dashboards and the extension ask speckle.site; they do not read the
    environment themselves (one place, one set of defaults)."""
    names = "|".join(NAMES)
    read = re.compile(rf"""(\.get\(\s*|getenv\(\s*|\[)["']({names})["'](?!\]\s*=)""")
    offenders = []
    for folder in ("speckle", "extensions", "notebooks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "speckle" / "site.py":
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if read.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
