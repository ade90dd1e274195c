"""The hub on Kubernetes (zero-to-jupyterhub), offline: hub_config/kubernetes/values.yaml's user
pods, built by the real KubeSpawner and validated against Kubernetes' own schemas.

No cluster is needed: KubeSpawner builds pod and PVC manifests without one (``KUBECONFIG`` points
at a valid kubeconfig that is never contacted), and ``kubernetes-validate --strict`` checks them
(a misspelt key fails). The ``singleuser`` values are applied to KubeSpawner as z2jh's hub does it
(the trait/key table and the storage and extraFiles blocks of the chart's
``jupyterhub/files/hub/jupyterhub_config.py``), with the chart's own defaults (4.x ``values.yaml``)
for the keys values.yaml leaves out. Keys covered, 1:1:

- ``image.name`` + ``image.tag`` -> ``image``; ``cmd`` -> ``cmd``; ``defaultUrl`` -> ``default_url``
- ``extraEnv`` -> ``environment``; ``lifecycleHooks`` -> ``lifecycle_hooks``
- ``cpu.limit/guarantee`` -> ``cpu_limit/cpu_guarantee``; ``memory.*`` -> ``mem_limit/mem_guarantee``;
  ``extraResource.limits/guarantees`` -> ``extra_resource_limits/guarantees``
- ``uid``, ``fsGid`` -> ``uid``, ``fs_gid``; ``scheduling.userPods.tolerations`` + ``extraTolerations``
  -> ``tolerations``
- ``profileList`` -> ``profile_list`` (with ``profile_options``: every profile and GPU choice built)
- ``storage`` (type dynamic: ``capacity``, ``homeMountPath``, ``dynamic.*``) -> ``storage_*``,
  ``pvc_name_template``, the home volume and mount; ``storage.extraVolumes/extraVolumeMounts``
  appended to ``volumes/volume_mounts``
- ``extraFiles`` -> the chart's Secret volume ``files`` and one ``subPath`` mount per file (its
  ``data`` is checked against the single-machine hub's server arguments)

Not covered (the chart's own templates, not KubeSpawner): ``hub.*``, ``proxy.*``, ``cull.*``,
``singleuser.networkPolicy``. A new ``singleuser`` key in values.yaml fails
``test_every_singleuser_key_is_covered`` until this mapping covers it.

Beyond validity: the speckle image and command, an ``nvidia.com/gpu`` limit exactly on the GPU
choices, the environment the dashboards need (the same keys as the single-machine hub's servers),
the user's home volume, the read-only beamline data, the hub's server settings, and the home
preparation hook (run here on the repository to check that it makes what the profiles open).
"""

from __future__ import annotations

import ast
import asyncio
import copy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from hubtools import HUB_CONFIG, ROOT

import kubernetes_validate
import kubespawner
from jupyterhub.objects import Hub as HubObject
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import kube_config
from speckle_hub import gpus as gpu_mod
from speckle_hub.settings import DEFAULTS, QUICK_CHECK_PATH
from speckle_hub.spawner import PROFILES, SpeckleSpawner

VALUES = HUB_CONFIG / "kubernetes" / "values.yaml"
#: Kubernetes versions to validate against: the oldest z2jh 4.x supports, and the newest schemas.
K8S_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
GPU = "nvidia.com/gpu"
IMAGE_ROOT = "/opt/speckle"  # where the user image holds the project (README.md)
HOME = "/home/jovyan"

#: z2jh 4.x chart defaults (its values.yaml) for the keys values.yaml does not set.
CHART_DEFAULTS = {
    "singleuser": {
        "uid": 1000,
        "fsGid": 100,
        "storage": {
            "type": "dynamic",
            "capacity": "10Gi",
            "homeMountPath": HOME,
            "extraVolumes": [],
            "extraVolumeMounts": [],
            "dynamic": {"storageClass": None, "pvcNameTemplate": None, "volumeNameTemplate": "volume-{user_server}",
                        "storageAccessModes": ["ReadWriteOnce"], "subPath": None},
        },
    },
    "scheduling": {"userPods": {"tolerations": [
        {"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"},
        {"key": "hub.jupyter.org_dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"},
    ]}},
}
#: singleuser key -> KubeSpawner trait, as z2jh's jupyterhub_config.py sets them (the keys used here).
TRAIT_KEYS = (
    ("cmd", "cmd"), ("default_url", "defaultUrl"), ("environment", "extraEnv"),
    ("lifecycle_hooks", "lifecycleHooks"), ("uid", "uid"), ("fs_gid", "fsGid"),
    ("cpu_limit", "cpu.limit"), ("cpu_guarantee", "cpu.guarantee"),
    ("mem_limit", "memory.limit"), ("mem_guarantee", "memory.guarantee"),
    ("extra_resource_limits", "extraResource.limits"), ("extra_resource_guarantees", "extraResource.guarantees"),
    ("profile_list", "profileList"),
)
COVERED = {"image", "cmd", "defaultUrl", "extraEnv", "lifecycleHooks", "uid", "fsGid", "cpu", "memory",
           "extraResource", "extraTolerations", "profileList", "storage", "extraFiles"}
NOT_KUBESPAWNER = {"networkPolicy"}  # chart templates (NetworkPolicy objects), not the pod


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def _get(tree: dict, dotted: str, default=None):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree


def load_values() -> dict:
    return _merge(CHART_DEFAULTS, yaml.safe_load(VALUES.read_text()))


def kubespawner_traits(values: dict) -> dict:
    """The KubeSpawner traits z2jh's hub sets from ``values`` (the keys listed in the docstring)."""
    su = values["singleuser"]
    traits = {trait: copy.deepcopy(_get(su, key)) for trait, key in TRAIT_KEYS if _get(su, key) is not None}
    image = su["image"]["name"]
    traits["image"] = f"{image}:{su['image']['tag']}" if su["image"].get("tag") else image
    tolerations = _get(values, "scheduling.userPods.tolerations", []) + su.get("extraTolerations", [])
    if tolerations:
        traits["tolerations"] = copy.deepcopy(tolerations)
    storage = su["storage"]
    volumes, mounts = [], []
    if storage["type"] == "dynamic":
        dyn = storage["dynamic"]
        if dyn.get("pvcNameTemplate"):
            traits["pvc_name_template"] = dyn["pvcNameTemplate"]
        traits["storage_pvc_ensure"] = True
        for trait, value in (("storage_class", dyn.get("storageClass")),
                             ("storage_access_modes", dyn.get("storageAccessModes")),
                             ("storage_capacity", storage.get("capacity"))):
            if value is not None:
                traits[trait] = value
        volumes.append({"name": dyn["volumeNameTemplate"], "persistentVolumeClaim": {"claimName": "{pvc_name}"}})
        mounts.append({"mountPath": storage["homeMountPath"], "name": dyn["volumeNameTemplate"],
                       "subPath": dyn.get("subPath")})
    files = su.get("extraFiles") or {}
    if files:
        items = [{"key": key, "path": key, **({"mode": f["mode"]} if "mode" in f else {})} for key, f in files.items()]
        volumes.append({"name": "files", "secret": {"secretName": "singleuser", "items": items}})
        mounts += [{"mountPath": f["mountPath"], "subPath": key, "name": "files"} for key, f in files.items()]
    traits["volumes"] = volumes + copy.deepcopy(storage.get("extraVolumes", []))
    traits["volume_mounts"] = mounts + copy.deepcopy(storage.get("extraVolumeMounts", []))
    return traits


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory):
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "offline",
        "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "offline", "user": {"token": "never-sent"}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline", "namespace": "speckle"}}],
    }))
    return path


def _user():
    return SimpleNamespace(name="alice", id=7, url="/user/alice/", escaped_name="alice")


def build(kubeconfig, monkeypatch, user_options: dict) -> tuple[dict, dict]:
    """(pod, pvc) manifests, as plain dicts, for these user options."""
    # read at import as $KUBECONFIG; the client then loads it (valid, never contacted)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    traits = kubespawner_traits(load_values())

    async def make():
        spawner = kubespawner.KubeSpawner(user=_user(), hub=HubObject(), namespace="speckle", **traits)
        spawner.user_options = dict(user_options)
        await spawner.load_user_options()
        api = ApiClient()
        try:
            return (api.sanitize_for_serialization(await spawner.get_pod_manifest()),
                    api.sanitize_for_serialization(spawner.get_pvc_manifest()))
        finally:
            await api.close()

    return asyncio.run(make())


def _choices() -> list[tuple[str, str]]:
    return [(p["slug"], choice) for p in yaml.safe_load(VALUES.read_text())["singleuser"]["profileList"]
            for choice in p["profile_options"]["gpu"]["choices"]]


def _env(pod: dict) -> dict:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def _hub_server_args(profile: str) -> list[str]:
    """The single-machine hub's user-server arguments for ``profile``, with default settings."""
    sp = SpeckleSpawner(speckle_settings={**{k: DEFAULTS[k] for k in ("data", "culling", "gpus", "dashboards")},
                                          "users": DEFAULTS["users"], "auth_type": "native", "state_dir": "/x"})
    sp.user_options = {"profile": profile}
    return sp.get_args()


def _hub_server_env_keys() -> set[str]:
    """The variables the single-machine hub sets on every user server (SPECKLE_*, JUPYTER_PATH)."""

    class Probe(SpeckleSpawner):
        home = Path(HOME)
        single_account = False

        def user_env(self, env):
            return env

    sp = Probe(user=_user(), hub=HubObject(), speckle_settings={"data": DEFAULTS["data"]})
    return {k for k in sp.get_env() if k.startswith("SPECKLE_") or k == "JUPYTER_PATH"}


def _as_config(args: list[str]) -> dict:
    """``--Section.name=value`` arguments as the nested dict a JSON config file holds."""
    out: dict = {}
    for arg in args:
        key, value = arg[2:].split("=", 1)
        section, name = key.split(".", 1)
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        out.setdefault(section, {})[name] = value
    return out


# ---------------------------------------------------------------------- the tests
def test_every_singleuser_key_is_covered():
    keys = set(yaml.safe_load(VALUES.read_text())["singleuser"])
    assert keys - COVERED - NOT_KUBESPAWNER == set(), "values.yaml uses keys this test does not map"


@pytest.mark.parametrize("profile,choice", _choices())
def test_every_profile_builds_a_valid_pod(kubeconfig, monkeypatch, profile, choice):
    pod, pvc = build(kubeconfig, monkeypatch, {"profile": profile, "gpu": choice})
    for version in K8S_VERSIONS:
        for manifest in (pod, pvc):
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{manifest['kind']} of {profile}/{choice} is invalid for Kubernetes {version}: {exc}")

    container = pod["spec"]["containers"][0]
    env = _env(pod)
    # the speckle image, running the hub's own user-server command
    assert container["image"] == "registry.beamline.example/speckle-singleuser:0.1.0"
    assert container["args"][:2] == ["python3", f"{IMAGE_ROOT}/hub_config/user_server/singleuser.py"]
    # the landing page of the profile, as on the single-machine hub
    assert env["JUPYTERHUB_DEFAULT_URL"] == PROFILES[profile]["default_url"]
    # the profile's own server arguments (the rest is in the settings file): the hub's for it
    # beyond what every server gets (Quick check: the preheated dashboard)
    common = _hub_server_args("lab")
    assert container["args"][2:] == [a for a in _hub_server_args(profile) if a not in common]
    assert (len(container["args"]) > 2) == (profile == "quick")

    # a GPU exactly on the GPU choice; the CPU choice hides the node's GPUs as the hub does without one
    limits = container["resources"]["limits"]
    tolerated = {t["key"] for t in pod["spec"].get("tolerations", [])}
    if choice == "gpu":
        assert limits[GPU] == "1" and GPU in tolerated
        assert "CUDA_VISIBLE_DEVICES" not in env and env.get("SPECKLE_GPU_NAME") != "CPU"
    else:
        assert GPU not in limits and GPU not in tolerated
        assert {k: env[k] for k in gpu_mod.Assignment(None).env} == gpu_mod.Assignment(None).env
        assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    # an override replaces the chart's tolerations: the dedicated user nodes stay allowed
    assert "hub.jupyter.org/dedicated" in tolerated
    # KubeSpawner writes numbers: CPUs, and bytes (JupyterHub's "G" is 2**30)
    assert float(limits["cpu"]) == 8 and int(limits["memory"]) == 32 * 2**30

    # the environment the dashboards need: every variable the single-machine hub sets (with a GPU
    # from the device plugin, SPECKLE_GPU_NAME stays unset: the dashboards then ask the library)
    assert _hub_server_env_keys() - set(env) == ({"SPECKLE_GPU_NAME"} if choice == "gpu" else set())
    assert env["SPECKLE_HUB_MODE"] == "isolated"
    assert env["SPECKLE_UPLOAD_DIR"] == f"{HOME}/speckle-uploads"

    # storage: the user's own volume as home, the beamline data read-only where SPECKLE_DATA_DIRS says
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    home = volumes[mounts[HOME]["name"]]
    assert home["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    data = mounts[env["SPECKLE_DATA_DIRS"]]
    assert data["readOnly"] and volumes[data["name"]]["nfs"]["readOnly"]
    config = mounts["/etc/jupyter/jupyter_server_config.json"]
    assert volumes[config["name"]]["secret"]["items"][0]["key"] == config["subPath"]
    assert pod["spec"]["securityContext"]["fsGroup"] == 100 and container["securityContext"]["runAsUser"] == 1000


def test_server_settings_are_the_single_machine_hubs():
    """extraFiles' jupyter_server_config.json holds what the hub passes to every server."""
    data = yaml.safe_load(VALUES.read_text())["singleuser"]["extraFiles"]["speckle-server-config"]["data"]
    assert data == _as_config(_hub_server_args("lab"))


def test_post_start_hook_prepares_what_the_profiles_open(kubeconfig, monkeypatch, tmp_path):
    """The pod's postStart command, run on this repository (image paths mapped to it)."""
    pod, _ = build(kubeconfig, monkeypatch, {"profile": "quick", "gpu": "cpu"})
    container = pod["spec"]["containers"][0]
    env = _env(pod)
    beamline = tmp_path / "beamline"
    beamline.mkdir()
    here = {IMAGE_ROOT: str(ROOT), HOME: str(tmp_path / "home"), env["SPECKLE_DATA_DIRS"]: str(beamline)}

    def local(text: str) -> str:
        for image_path, path in here.items():
            text = text.replace(image_path, path)
        return text

    command = [local(part) for part in container["lifecycle"]["postStart"]["exec"]["command"]]
    assert command[0] == "python3"
    subprocess.run([sys.executable, *command[1:]], check=True, capture_output=True, timeout=60)
    assert Path(local(env["SPECKLE_DASHBOARDS_DIR"]), Path(QUICK_CHECK_PATH).name).is_file()
    assert Path(local(HOME), QUICK_CHECK_PATH.removeprefix("voila/render/")).is_file()
    assert Path(local(env["SPECKLE_UPLOAD_DIR"])).is_dir()
    assert Path(local(env["SPECKLE_EXAMPLES_DIR"])).is_dir()
    links = [p for p in Path(local(HOME), "beamline-data").iterdir() if p.is_symlink()]
    assert [p.resolve() for p in links] == [beamline.resolve()]
    # what the command and the environment name exists in the project (hence in the image)
    assert Path(local(container["args"][1])).is_file()
    assert (Path(local(env["JUPYTER_PATH"])) / "nbconvert" / "templates" / "speckle").is_dir()
