// speckle upload widget (anywidget ESM).
//
// Streams a file chosen in the browser to the speckle_jupyter server extension in chunks
// (Blob.slice, never the whole file in memory), resumably:
//   POST {base}speckle/api/uploads {"name","size"}      -> {"id","offset","chunk_size"}
//   PUT  {base}speckle/api/uploads/{id}?offset=N (body) -> {"offset"}; 409 -> {"offset": expected}
//   GET  {base}speckle/api/uploads/{id}                 -> {"offset","size","state"}
//   POST {base}speckle/api/uploads/{id}/finish          -> {"path","name","format","shape","dtype"}
//                                                         or 4xx {"message"}
// Requests carry the `_xsrf` cookie as the X-XSRFToken header, with same-origin credentials.
// The Python side (speckle.ui.uploader.Uploader) sees the traits progress, state, path, error.

const API = "speckle/api/uploads";
const DEFAULT_CHUNK = 64 * 1024 * 1024;

export class UploadError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "UploadError";
    this.status = status;
  }
}

/** The `_xsrf` cookie's value ("" when there is none). */
export function xsrfToken(cookies) {
  const m = String(cookies || "").match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return m ? m[1] : "";
}

/** The base URL from the page's Jupyter config, for when Python did not give one. */
export function pageBaseUrl(doc) {
  try {
    const node = doc && doc.getElementById("jupyter-config-data");
    const url = node ? JSON.parse(node.textContent).baseUrl : "";
    if (url) return url.endsWith("/") ? url : url + "/";
  } catch (e) {
    /* no config: fall through */
  }
  return "/";
}

function formatBytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

async function readJson(resp) {
  try {
    return await resp.json();
  } catch (e) {
    return null;
  }
}

/** An UploadError with the server's message, or plain words for the HTTP status. */
export async function refusal(resp) {
  const body = await readJson(resp);
  if (body && typeof body.message === "string" && body.message) {
    return new UploadError(body.message, resp.status);
  }
  const s = resp.status;
  let text;
  if (s === 401 || s === 403) {
    text = "your session may have expired (or the page is too old): reload the page, log in again and retry";
  } else if (s === 404) {
    text = "the upload service is not available on this server (the speckle_jupyter server extension is not enabled): ask the hub's administrator";
  } else if (s === 413) {
    text = "the file is larger than the upload limit or your remaining quota: delete old uploads or ask for more space";
  } else if (s >= 500) {
    text = "the server failed while receiving the file: try again, and report it if it happens again";
  } else {
    text = "the server refused the upload";
  }
  return new UploadError(`${text} (HTTP ${s}${resp.statusText ? " " + resp.statusText : ""})`, s);
}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function isAbort(err, signal) {
  return (signal && signal.aborted) || (err && err.name === "AbortError");
}

/**
 * Upload `file` (a File or Blob with `name`) and return the server's finish response.
 *
 * options: baseUrl (ends with "/"), chunkSize, xsrf, fetch, signal (AbortSignal),
 * onProgress(sent, total), onState(state), storage (localStorage-like, to resume after a
 * reload), maxRetries, sleep(ms).
 */
export async function uploadFile(file, options = {}) {
  const {
    baseUrl = "/",
    chunkSize = DEFAULT_CHUNK,
    xsrf = "",
    signal = undefined,
    onProgress = () => {},
    onState = () => {},
    storage = null,
    maxRetries = 5,
    sleep = wait,
  } = options;
  const doFetch = options.fetch || globalThis.fetch.bind(globalThis);
  const api = baseUrl + API;
  const size = file.size;
  const key = `speckle-upload:${baseUrl}:${file.name}:${size}:${file.lastModified || 0}`;
  const request = (url, init = {}) =>
    doFetch(url, {
      credentials: "same-origin",
      signal,
      ...init,
      headers: { "X-XSRFToken": xsrf, ...(init.headers || {}) },
    });
  const remember = (id) => {
    try {
      if (storage) id ? storage.setItem(key, JSON.stringify({ id, chunk })) : storage.removeItem(key);
    } catch (e) {
      /* private browsing: no resume across reloads */
    }
  };
  const status = async (id) => {
    const resp = await request(`${api}/${encodeURIComponent(id)}`, { method: "GET" });
    if (!resp.ok) throw await refusal(resp);
    return await readJson(resp);
  };

  let id = null;
  let offset = 0;
  let chunk = chunkSize;
  let resumed = false;
  let saved = null;
  try {
    saved = storage ? JSON.parse(storage.getItem(key) || "null") : null;
  } catch (e) {
    saved = null;
  }
  if (saved && saved.id) {
    try {
      const st = await status(saved.id);
      if (st && Number.isInteger(st.offset) && st.offset <= size && (st.size === undefined || st.size === size)) {
        id = String(saved.id);
        offset = st.offset;
        if (Number.isInteger(saved.chunk) && saved.chunk > 0) chunk = Math.min(chunkSize, saved.chunk);
        resumed = true;
      }
    } catch (e) {
      if (isAbort(e, signal)) throw e;
    }
    if (!id) remember(null);
  }

  const begin = async () => {
    const resp = await request(api, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: file.name, size }),
    });
    if (!resp.ok) throw await refusal(resp);
    const body = (await readJson(resp)) || {};
    if (!body.id) throw new UploadError("the server did not start the upload (no id in its answer)");
    id = String(body.id);
    offset = Number.isInteger(body.offset) ? body.offset : 0;
    if (Number.isInteger(body.chunk_size) && body.chunk_size > 0) chunk = Math.min(chunkSize, body.chunk_size);
    resumed = false;
    remember(id);
  };
  if (!id) await begin();
  onState("uploading");
  onProgress(offset, size);

  let failures = 0;
  while (offset < size) {
    if (signal && signal.aborted) throw new DOMException("cancelled", "AbortError");
    const end = Math.min(offset + chunk, size);
    let resp;
    try {
      resp = await request(`${api}/${encodeURIComponent(id)}?offset=${offset}`, {
        method: "PUT",
        headers: { "Content-Type": "application/octet-stream" },
        body: file.slice(offset, end),
      });
    } catch (e) {
      if (isAbort(e, signal)) throw e;
      failures += 1;
      if (failures > maxRetries) {
        throw new UploadError(`the connection to the server was lost (${e.message || e}); choose the same file again to resume`);
      }
      await sleep(Math.min(500 * 2 ** (failures - 1), 8000));
      try {
        const st = await status(id); // where did the server get to?
        if (st && Number.isInteger(st.offset)) offset = st.offset;
      } catch (e2) {
        if (isAbort(e2, signal)) throw e2;
      }
      continue;
    }
    if (resp.status === 409) {
      const body = await readJson(resp);
      failures += 1;
      if (!body || !Number.isInteger(body.offset) || failures > maxRetries) {
        throw new UploadError("the server and the browser disagree on how much was sent; choose the file again to restart", 409);
      }
      offset = body.offset; // resume where the server is
      continue;
    }
    if ((resp.status === 404 || resp.status === 410) && resumed) {
      remember(null); // the server forgot the old upload: start again
      await begin();
      onProgress(offset, size);
      continue;
    }
    if (!resp.ok) {
      const err = await refusal(resp);
      if (resp.status !== 401 && resp.status !== 403) remember(null);
      throw err;
    }
    const body = await readJson(resp);
    offset = body && Number.isInteger(body.offset) ? body.offset : end;
    failures = 0;
    onProgress(offset, size);
  }

  onState("validating");
  const resp = await request(`${api}/${encodeURIComponent(id)}/finish`, { method: "POST" });
  if (!resp.ok) {
    const err = await refusal(resp);
    if (resp.status !== 401 && resp.status !== 403) remember(null);
    throw err;
  }
  remember(null);
  return (await readJson(resp)) || {};
}

function render({ model, el }) {
  el.classList.add("speckle-upload");
  const root = document.createElement("div");
  root.style.cssText = "display:flex;flex-direction:column;gap:6px;font-size:13px";
  const row = document.createElement("div");
  row.style.cssText = "display:flex;gap:8px;align-items:center;flex-wrap:wrap";
  const input = document.createElement("input");
  input.type = "file";
  input.className = "speckle-upload-input";
  const cancel = document.createElement("button");
  cancel.textContent = "Cancel upload";
  cancel.className = "speckle-upload-cancel jupyter-button";
  cancel.disabled = true;
  row.append(input, cancel);
  const bar = document.createElement("progress");
  bar.className = "speckle-upload-progress";
  bar.max = 1;
  bar.value = 0;
  bar.style.cssText = "width:100%;height:14px";
  const status = document.createElement("div");
  status.className = "speckle-upload-status";
  const error = document.createElement("div");
  error.className = "speckle-upload-error speckle-error";
  error.style.cssText =
    "color:#b00020;background:#fdecee;border-left:4px solid #b00020;padding:4px 8px;display:none";
  root.append(row, bar, status, error);
  el.appendChild(root);

  let controller = null;

  const show = () => {
    const state = model.get("state");
    bar.value = model.get("progress") || 0;
    const msg = model.get("error") || "";
    error.textContent = msg;
    error.style.display = msg ? "block" : "none";
    cancel.disabled = !(state === "uploading" || state === "validating" || state === "starting");
    input.disabled = !cancel.disabled;
    const name = model.get("name");
    if (state === "done") status.textContent = `Uploaded ${name}.`;
    else if (state === "validating") status.textContent = `Checking ${name} on the server…`;
    else if (state === "cancelled") status.textContent = "Upload cancelled.";
    else if (state === "failed") status.textContent = `The upload of ${name} did not succeed:`;
    else if (state === "idle") status.textContent = "Choose a data file on your computer (any size).";
  };

  const start = async (file) => {
    controller = new AbortController();
    model.set({ state: "starting", progress: 0, error: "", path: "", name: file.name, size: file.size, info: {} });
    model.save_changes();
    show();
    const started = Date.now();
    let last = 0;
    let storage = null;
    try {
      storage = window.localStorage;
    } catch (e) {
      storage = null;
    }
    try {
      const info = await uploadFile(file, {
        baseUrl: model.get("base_url") || pageBaseUrl(document),
        chunkSize: model.get("chunk_size") || DEFAULT_CHUNK,
        xsrf: xsrfToken(document.cookie),
        signal: controller.signal,
        storage,
        onState: (s) => {
          model.set("state", s);
          model.save_changes();
          show();
        },
        onProgress: (sent, total) => {
          model.set("progress", total ? sent / total : 1);
          const now = Date.now();
          if (now - last > 250 || sent === total) {
            last = now;
            model.save_changes();
          }
          const rate = sent / Math.max((now - started) / 1000, 1e-3);
          status.textContent = `Uploading ${file.name}: ${formatBytes(sent)} of ${formatBytes(total)} (${formatBytes(rate)}/s)`;
          bar.value = total ? sent / total : 1;
        },
      });
      model.set({ state: "done", progress: 1, path: String(info.path || ""), info });
    } catch (e) {
      if (isAbort(e, controller.signal)) {
        model.set({ state: "cancelled", error: "" });
      } else {
        model.set({ state: "failed", error: (e && e.message) || String(e) });
      }
    } finally {
      controller = null;
      input.value = "";
      model.save_changes();
      show();
    }
  };

  input.addEventListener("change", () => {
    if (input.files && input.files.length) start(input.files[0]);
  });
  cancel.addEventListener("click", () => controller && controller.abort());
  const onChange = () => show();
  model.on("change:state", onChange);
  model.on("change:error", onChange);
  model.on("change:progress", onChange);
  show();
  return () => {
    model.off("change:state", onChange);
    model.off("change:error", onChange);
    model.off("change:progress", onChange);
  };
}

export default { render };
