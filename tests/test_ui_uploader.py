"""The upload widget: its Python traits, the data chooser's reaction, and its JavaScript.

The JavaScript (``speckle/ui/common/uploader.js``) runs under Node against an in-memory fake of the
server extension's REST protocol: chunking, the XSRF header, resume after a 409 or a lost
connection, resume after a page reload, and the server's refusal message. Node is a project
requirement (the hub's proxy is an npm package), so a missing Node is a failure, not a skip.
"""

import json
import shutil
import subprocess
from importlib import resources

import numpy as np

from speckle.ui import DataChooser, Uploader
from speckle.ui.common.server import base_url


def test_uploader_traits_and_base_url(monkeypatch):
    monkeypatch.delenv("SPECKLE_BASE_URL", raising=False)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ana")
    up = Uploader()
    assert up.base_url == "/user/ana/"
    assert up.chunk_size == 64 * 2**20
    assert (up.state, up.progress, up.path, up.error) == ("idle", 0.0, "", "")
    assert "speckle-upload" in up._dom_classes
    assert "export default" in up._esm and "speckle/api/uploads" in up._esm
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX")
    assert Uploader().base_url == "/"
    assert Uploader(base_url="/x/").base_url == "/x/"


def test_base_url_forms():
    assert base_url({}) == "/"
    assert base_url({"JUPYTERHUB_SERVICE_PREFIX": "/user/bob/"}) == "/user/bob/"
    assert base_url({"JUPYTERHUB_SERVICE_PREFIX": "user/bob"}) == "/user/bob/"
    assert base_url({"SPECKLE_BASE_URL": "/lab", "JUPYTERHUB_SERVICE_PREFIX": "/u/"}) == "/lab/"


def test_finished_upload_is_opened(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    np.save(uploads / "frames.npy", np.random.default_rng(0).poisson(1, (8, 16, 16))
            .astype(np.uint16))
    chooser = DataChooser(data_dirs=[], upload_dir=uploads)
    chooser.uploader.name = "frames.npy"
    chooser.uploader.state = "done"
    chooser.uploader.path = str(uploads / "frames.npy")  # as the browser reports it
    assert chooser.wait(30)
    assert chooser.state == "ready" and chooser.dataset.shape == (8, 16, 16)
    assert chooser.label == "frames.npy"


def test_upload_outside_the_upload_folder_is_not_opened(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    np.save(tmp_path / "elsewhere.npy", np.ones((2, 4, 4), np.uint16))
    chooser = DataChooser(data_dirs=[], upload_dir=uploads)
    chooser.uploader.path = str(tmp_path / "elsewhere.npy")
    chooser.wait(10)
    assert chooser.dataset is None
    assert "outside your upload folder" in chooser.message.text
    assert "speckle-error" in chooser.message._dom_classes


HARNESS = r"""
import assert from "node:assert/strict";
import { uploadFile, xsrfToken, pageBaseUrl, UploadError } from "./uploader.mjs";

// An in-memory fake of the speckle_jupyter upload API.
function fakeServer({ chunkLimit = 16, failFinish = null, dropAfterStore = -1, missing = false } = {}) {
  const uploads = new Map();
  const log = [];
  let next = 1;
  let puts = 0;
  const json = (status, body) => new Response(JSON.stringify(body), {
    status, headers: { "Content-Type": "application/json" } });
  async function fetch(url, init = {}) {
    const u = new URL(url, "http://hub.test");
    const method = init.method || "GET";
    log.push({ method, path: u.pathname + u.search, headers: init.headers, credentials: init.credentials });
    if (missing) return new Response("<html>404</html>", { status: 404, statusText: "Not Found" });
    const m = u.pathname.match(/^\/user\/ana\/speckle\/api\/uploads(?:\/([^/]+))?(\/finish)?$/);
    assert.ok(m, "unexpected URL " + u.pathname);
    assert.equal(init.headers["X-XSRFToken"], "2|ab|cd|1700000000");
    assert.equal(init.credentials, "same-origin");
    const [, id, finish] = m;
    if (!id && method === "POST") {
      const body = JSON.parse(init.body);
      const key = String(next++);
      uploads.set(key, { name: body.name, size: body.size, data: [], offset: 0 });
      return json(201, { id: key, offset: 0, chunk_size: chunkLimit });
    }
    const up = uploads.get(id);
    if (!up) return json(404, { message: "no such upload" });
    if (method === "GET") return json(200, { offset: up.offset, size: up.size, state: "receiving" });
    if (method === "PUT") {
      const offset = Number(u.searchParams.get("offset"));
      if (offset !== up.offset) return json(409, { offset: up.offset });
      const bytes = new Uint8Array(await init.body.arrayBuffer());
      assert.ok(bytes.length <= chunkLimit, "chunk too large");
      up.data.push(...bytes);
      up.offset += bytes.length;
      puts += 1;
      if (puts === dropAfterStore) throw new TypeError("network error");  // stored, answer lost
      return json(200, { offset: up.offset });
    }
    if (method === "POST" && finish) {
      if (failFinish) return json(failFinish.status, { message: failFinish.message });
      return json(200, { path: "/home/ana/speckle-uploads/" + up.name, name: up.name,
                         format: "npy", shape: [2, 4, 4], dtype: "uint16" });
    }
    throw new Error("unhandled " + method + " " + url);
  }
  return { fetch, uploads, log };
}

function file(n, name = "scan.npy") {
  const bytes = new Uint8Array(n).map((_, i) => i % 251);
  const f = new Blob([bytes]);
  f.name = name;
  f.lastModified = 1234;
  return { f, bytes };
}

class Storage { constructor() { this.m = new Map(); }
  getItem(k) { return this.m.has(k) ? this.m.get(k) : null; }
  setItem(k, v) { this.m.set(k, String(v)); } removeItem(k) { this.m.delete(k); } }

const base = { baseUrl: "http://hub.test/user/ana/", xsrf: "2|ab|cd|1700000000", sleep: async () => {} };
const results = {};

assert.equal(xsrfToken("a=1; _xsrf=2|ab|cd|1700000000; b=2"), "2|ab|cd|1700000000");
assert.equal(xsrfToken("other=1"), "");
assert.equal(pageBaseUrl(null), "/");
assert.equal(pageBaseUrl({ getElementById: () => ({ textContent: '{"baseUrl": "/user/ana"}' }) }), "/user/ana/");

{ // chunks of at most the server's chunk size, progress to the end, the server's answer
  const s = fakeServer({ chunkLimit: 16 });
  const { f, bytes } = file(40);
  const progress = [];
  const states = [];
  const info = await uploadFile(f, { ...base, fetch: s.fetch, chunkSize: 1 << 24,
    onProgress: (a, b) => progress.push([a, b]), onState: (x) => states.push(x) });
  assert.equal(info.path, "/home/ana/speckle-uploads/scan.npy");
  assert.deepEqual(s.uploads.get("1").data, Array.from(bytes));
  assert.deepEqual(progress.map((p) => p[0]), [0, 16, 32, 40]);
  assert.deepEqual(states, ["uploading", "validating"]);
  assert.deepEqual(s.log.map((l) => l.method + " " + l.path), [
    "POST /user/ana/speckle/api/uploads",
    "PUT /user/ana/speckle/api/uploads/1?offset=0",
    "PUT /user/ana/speckle/api/uploads/1?offset=16",
    "PUT /user/ana/speckle/api/uploads/1?offset=32",
    "POST /user/ana/speckle/api/uploads/1/finish"]);
  results.chunks = true;
}

{ // a lost answer: the client asks where the server is and goes on from there
  const s = fakeServer({ chunkLimit: 10, dropAfterStore: 2 });
  const { f, bytes } = file(35);
  await uploadFile(f, { ...base, fetch: s.fetch });
  assert.deepEqual(s.uploads.get("1").data, Array.from(bytes));
  assert.ok(s.log.some((l) => l.method === "GET"));
  results.lost_connection = true;
}

{ // a 409 gives the offset the server expects
  const s = fakeServer({ chunkLimit: 8 });
  const { f, bytes } = file(20);
  const storage = new Storage();
  // a first attempt stored 8 bytes, then the page was reloaded
  s.uploads.set("7", { name: "scan.npy", size: 20, data: Array.from(bytes.slice(0, 8)), offset: 8 });
  storage.setItem("speckle-upload:http://hub.test/user/ana/:scan.npy:20:1234", JSON.stringify({ id: "7", chunk: 8 }));
  const progress = [];
  await uploadFile(f, { ...base, fetch: s.fetch, storage, onProgress: (a) => progress.push(a) });
  assert.deepEqual(s.uploads.get("7").data, Array.from(bytes));
  assert.equal(progress[0], 8, "resumed at the server's offset");
  assert.ok(!s.log.some((l) => l.method === "POST" && !l.path.endsWith("finish")), "no new upload");
  assert.equal(storage.m.size, 0, "forgotten once finished");
  results.resume_after_reload = true;

  // the server is ahead of the client (its answer was lost): 409 with the offset
  const s2 = fakeServer({ chunkLimit: 8 });
  s2.uploads.set("9", { name: "scan.npy", size: 20, data: Array.from(bytes.slice(0, 16)), offset: 16 });
  const storage2 = new Storage();
  storage2.setItem("speckle-upload:http://hub.test/user/ana/:scan.npy:20:1234", JSON.stringify({ id: "9", chunk: 8 }));
  const wrongGet = async (url, init) => {  // a stale status answer claims 8
    if ((init.method || "GET") === "GET") return new Response(JSON.stringify({ offset: 8, size: 20, state: "receiving" }), { status: 200 });
    return s2.fetch(url, init);
  };
  await uploadFile(f, { ...base, fetch: wrongGet, storage: storage2 });
  assert.deepEqual(s2.uploads.get("9").data, Array.from(bytes));
  assert.ok(s2.log.some((l) => l.path.endsWith("offset=16")));
  results.conflict_409 = true;
}

{ // the server's refusal message reaches the user unchanged
  const s = fakeServer({ failFinish: { status: 422, message: "scan.npy: unsupported content, looks like text" } });
  const { f } = file(5);
  await assert.rejects(uploadFile(f, { ...base, fetch: s.fetch }),
    (e) => e instanceof UploadError && e.status === 422 && e.message === "scan.npy: unsupported content, looks like text");
  const q = fakeServer({ failFinish: { status: 413, message: "quota exceeded: 2.0 GB of 2.0 GB used" } });
  await assert.rejects(uploadFile(f, { ...base, fetch: q.fetch }), /quota exceeded/);
  results.refusal = true;
}

{ // no server extension: plain words, not an HTML page
  const s = fakeServer({ missing: true });
  const { f } = file(5);
  await assert.rejects(uploadFile(f, { ...base, fetch: s.fetch }),
    (e) => /upload service is not available/.test(e.message) && /HTTP 404/.test(e.message));
  results.no_extension = true;
}

{ // cancel: the abort stops the upload
  const s = fakeServer({ chunkLimit: 4 });
  const { f } = file(40);
  const controller = new AbortController();
  let n = 0;
  await assert.rejects(uploadFile(f, { ...base, fetch: s.fetch, signal: controller.signal,
    onProgress: () => { if (++n === 3) controller.abort(); } }), (e) => e.name === "AbortError");
  assert.ok(s.uploads.get("1").offset < 40);
  results.cancel = true;
}

console.log(JSON.stringify(results));
"""


def test_uploader_javascript_protocol(tmp_path):
    node = shutil.which("node")
    assert node, "Node.js is required (the hub's proxy needs it too): install nodejs"
    js = resources.files("speckle.ui.common").joinpath("uploader.js").read_text(encoding="utf-8")
    (tmp_path / "uploader.mjs").write_text(js, encoding="utf-8")
    (tmp_path / "harness.mjs").write_text(HARNESS, encoding="utf-8")
    proc = subprocess.run([node, "harness.mjs"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    assert done == {"chunks": True, "lost_connection": True, "resume_after_reload": True,
                    "conflict_409": True, "refusal": True, "no_extension": True,
                    "cancel": True}
