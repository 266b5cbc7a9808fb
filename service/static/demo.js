// The SSD detection demo page. Plain browser JavaScript, no build step, no external resources.
// It uses the public API only: POST /detect, GET /model, and the model repository index
// (POST /v2/repository/index) when the server's OpenAPI document lists it.
"use strict";

// The page asks for every detection down to this score once, then the slider only re-filters.
const REQUEST_THRESHOLD = 0.05;
// The same colours as ssd_core/visualize.py PALETTE: label k gets PALETTE[(k - 1) % 20].
const PALETTE = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
  [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
  [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128],
];
const MAX_CANVAS_SIDE_PX = 1600;
const REPOSITORY_INDEX = "/v2/repository/index";
const TOKEN_KEY = "ssd-demo-token"; // sessionStorage: forgotten when the tab closes

const $ = (id) => document.getElementById(id);
const state = { models: [], result: null, bitmap: null, serverMs: null, roundTripMs: null };

class ApiError extends Error {
  constructor(response, body) {
    super(describeError(response, body));
    this.status = response.status;
  }
}

// fetch() with the API token (when the server asked for one) as a bearer token.
function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { ...(options.headers || {}) };
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(path, { ...options, headers });
}

function colourOf(label) {
  const [r, g, b] = PALETTE[(label - 1) % PALETTE.length];
  return `rgb(${r}, ${g}, ${b})`;
}

function textColourOf(label) {
  const [r, g, b] = PALETTE[(label - 1) % PALETTE.length];
  return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#000" : "#fff";
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// --- models -------------------------------------------------------------------------------

async function repositoryListed() {
  const response = await fetch("/openapi.json");
  if (!response.ok) return false;
  const schema = await readJson(response);
  return Boolean(schema && schema.paths && schema.paths[REPOSITORY_INDEX]);
}

async function listModels() {
  if (await repositoryListed()) {
    const response = await api(REPOSITORY_INDEX, {
      method: "POST", headers: { "content-type": "application/json" }, body: "{}",
    });
    const index = response.ok ? await readJson(response) : null;
    if (Array.isArray(index)) {
      const ready = index.filter((m) => !m.state || m.state === "READY");
      if (ready.length > 0) return ready.map((m) => ({ name: m.name, version: m.version || "" }));
    }
  }
  const response = await api("/model");
  const info = await readJson(response);
  if (!response.ok || !info) throw new ApiError(response, info);
  rememberThreshold(null, info);
  return [{ name: info.name, version: info.version, single: true }];
}

async function loadModels() {
  try {
    state.models = await listModels();
  } catch (error) {
    $("model-info").textContent = "no model";
    if (error.status === 401) askForToken();
    showError(`Could not list the served models: ${error.message}`);
    setState("error");
    return;
  }
  $("auth").hidden = true;
  hideError();
  const select = $("model");
  select.replaceChildren(...state.models.map((m) => new Option(m.name, m.name)));
  select.disabled = state.models.length < 2;
  showModel(state.models[0].name, state.models[0].version);
  // Every model's decoder threshold now rather than just before an upload: a request made
  // right before a large upload left Chromium unable to read that upload's early 413.
  const keys = state.models.length > 1 ? state.models.map((m) => m.name) : [null];
  await Promise.all(keys.map(requestThreshold)).catch(() => {});
  setState("idle");
}

// The server refuses a threshold below the model decoder's (it never returns those scores):
// the threshold to ask for, by model name (null: the default model), from GET /model.
const thresholds = new Map();

function rememberThreshold(model, info) {
  const decoder = info && info.decoder ? Number(info.decoder.score_threshold) : 0;
  thresholds.set(model, Math.max(REQUEST_THRESHOLD, decoder || 0));
}

async function requestThreshold(model) {
  if (!thresholds.has(model)) {
    const response = await api(model ? `/model?model=${encodeURIComponent(model)}` : "/model");
    rememberThreshold(model, response.ok ? await readJson(response) : null);
  }
  return thresholds.get(model);
}

function showModel(name, version) {
  $("model-info").textContent = version ? `${name}, version ${version}` : name;
}

// --- detection ----------------------------------------------------------------------------

function describeError(response, body) {
  const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
  const status = response.status;
  if (status === 400) return `The server could not read this image (400): ${detail}`;
  if (status === 401) return `The server needs a valid API token (401): ${detail}`;
  if (status === 413) return `The image is too large (413): ${detail}`;
  if (status === 415) return `This file type is not supported (415): ${detail}`;
  if (status === 422) return `The request was refused (422): ${detail}`;
  if (status === 503) {
    const retry = response.headers.get("Retry-After");
    const wait = retry ? ` Try again in ${retry} s.` : " Try again shortly.";
    return `The server is busy or not ready (503): ${detail}.${wait}`;
  }
  if (status === 504) return `The server did not answer in time (504): ${detail}`;
  return `The request failed (${status}): ${detail}`;
}

function serverDuration(header) {
  // Server-Timing: detect;dur=12.3
  const match = /(?:^|,)\s*detect\s*;[^,]*dur=([0-9.]+)/.exec(header || "");
  return match ? Number(match[1]) : null;
}

async function detect(blob, filename) {
  setState("busy");
  hideError();
  $("status").textContent = `detecting ${filename}…`;
  const url = new URL("/detect", window.location.origin);
  const model = state.models.length > 1 ? $("model").value : null;
  url.searchParams.set("score_threshold", String(await requestThreshold(model)));
  if (model) url.searchParams.set("model", model);
  const form = new FormData();
  form.append("image", blob, filename);
  const started = performance.now();
  let response;
  try {
    response = await api(url, { method: "POST", body: form, headers: { accept: "application/json" } });
  } catch (error) {
    return fail(`Could not reach the server: ${error.message}`);
  }
  const body = await readJson(response);
  if (response.status === 401) askForToken();
  if (!response.ok || !body) return fail(describeError(response, body));
  let bitmap = null;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: "from-image" });
  } catch {
    bitmap = null; // the server read it but this browser cannot: show the boxes on grey
  }
  Object.assign(state, {
    result: body, bitmap, roundTripMs: performance.now() - started,
    serverMs: serverDuration(response.headers.get("Server-Timing")),
  });
  showModel(body.model_name, body.model_version);
  redraw();
  setState("done");
}

function fail(message) {
  Object.assign(state, { result: null, bitmap: null });
  showError(message);
  redraw();
  $("status").textContent = "";
  setState("error");
}

// --- drawing ------------------------------------------------------------------------------

function visibleDetections() {
  if (!state.result) return [];
  const threshold = Number($("threshold").value);
  return state.result.detections.filter((d) => d.score > threshold);  // the server's rule
}

function redraw() {
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
  const shown = visibleDetections();
  drawCanvas(shown);
  fillTable(shown);
  if (state.result) {
    const server = state.serverMs === null ? "n/a" : `${state.serverMs.toFixed(1)} ms`;
    const total = state.result.detections.length;
    $("status").textContent = `${shown.length} of ${total} detections shown · ` +
      `${state.result.width} × ${state.result.height} px · server ${server} · ` +
      `round trip ${state.roundTripMs.toFixed(0)} ms`;
  }
}

function drawCanvas(shown) {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  if (!state.result) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    return;
  }
  const { width, height } = state.result;
  const scale = Math.min(1, MAX_CANVAS_SIDE_PX / Math.max(width, height));
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  canvas.dataset.scale = String(scale);
  if (state.bitmap) {
    ctx.drawImage(state.bitmap, 0, 0, canvas.width, canvas.height);
  } else {
    ctx.fillStyle = "#ccc";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  const line = Math.max(1, Math.round(Math.min(canvas.width, canvas.height) / 300));
  const fontPx = Math.max(11, 6 * line);
  ctx.font = `${fontPx}px sans-serif`;
  ctx.textBaseline = "top";
  // Lowest score first, so the best detection ends up on top.
  const ordered = [...shown].sort((a, b) => a.score - b.score);
  for (const d of ordered) drawOutline(ctx, d, scale, line);
  for (const d of ordered) drawCaption(ctx, d, scale, fontPx, canvas.width);
}

function pixelRect(box, scale) {
  const x0 = Math.floor(box.xmin * scale), y0 = Math.floor(box.ymin * scale);
  const x1 = Math.max(Math.ceil(box.xmax * scale), x0 + 1);
  const y1 = Math.max(Math.ceil(box.ymax * scale), y0 + 1);
  return [x0, y0, x1, y1];
}

function drawOutline(ctx, d, scale, line) {
  // Filled bands on whole pixels: crisp, and exactly the class colour (no anti-aliasing).
  const [x0, y0, x1, y1] = pixelRect(d.box, scale);
  ctx.fillStyle = colourOf(d.class_id);
  ctx.fillRect(x0, y0, x1 - x0, Math.min(line, y1 - y0));
  ctx.fillRect(x0, Math.max(y1 - line, y0), x1 - x0, Math.min(line, y1 - y0));
  ctx.fillRect(x0, y0, Math.min(line, x1 - x0), y1 - y0);
  ctx.fillRect(Math.max(x1 - line, x0), y0, Math.min(line, x1 - x0), y1 - y0);
}

function drawCaption(ctx, d, scale, fontPx, canvasWidth) {
  const caption = `${d.label} ${d.score.toFixed(2)}`;
  const [x0, y0] = pixelRect(d.box, scale);
  const pad = 2;
  const w = Math.ceil(ctx.measureText(caption).width) + 2 * pad;
  const h = fontPx + 2 * pad;
  const left = Math.max(0, Math.min(x0, canvasWidth - w));
  const top = y0 >= h ? y0 - h : y0;
  ctx.fillStyle = colourOf(d.class_id);
  ctx.fillRect(left, top, w, h);
  ctx.fillStyle = textColourOf(d.class_id);
  ctx.fillText(caption, left + pad, top + pad);
}

function fillTable(shown) {
  const rows = shown.map((d, i) => {
    const row = document.createElement("tr");
    Object.assign(row.dataset, {
      label: d.label, classId: String(d.class_id), score: String(d.score),
      box: JSON.stringify([d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax]),
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colourOf(d.class_id);
    const name = document.createElement("td");
    name.append(swatch, d.label);
    const cells = [String(i + 1), d.score.toFixed(3), d.box.xmin.toFixed(1),
      d.box.ymin.toFixed(1), d.box.xmax.toFixed(1), d.box.ymax.toFixed(1)].map((text) => {
      const cell = document.createElement("td");
      cell.textContent = text;
      return cell;
    });
    row.append(cells[0], name, ...cells.slice(1));
    return row;
  });
  $("detections").tBodies[0].replaceChildren(...rows);
}

// --- page state and input -----------------------------------------------------------------

function setState(name) {
  document.body.dataset.state = name;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function askForToken() {
  $("auth").hidden = false;
  $("token").focus();
}

function setUpTokenForm() {
  $("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    loadModels();
  });
}

function handleFiles(files) {
  if (files && files.length > 0) detect(files[0], files[0].name);
}

function setUpDropZone() {
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    handleFiles(event.dataTransfer.files);
  });
  $("file").addEventListener("change", (event) => {
    handleFiles(event.target.files);
    event.target.value = ""; // choosing the same file again re-runs it
  });
}

function setUpWebcam() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
  const video = $("video");
  $("webcam").hidden = false;
  $("webcam").addEventListener("click", async () => {
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    } catch (error) {
      showError(`The webcam is not available: ${error.message}`);
      return;
    }
    video.hidden = false;
    await video.play();
    $("capture").hidden = false;
  });
  $("capture").addEventListener("click", () => {
    const frame = document.createElement("canvas");
    frame.width = video.videoWidth;
    frame.height = video.videoHeight;
    frame.getContext("2d").drawImage(video, 0, 0);
    frame.toBlob((blob) => blob && detect(blob, "webcam.jpg"), "image/jpeg", 0.92);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpDropZone();
  setUpWebcam();
  setUpTokenForm();
  $("threshold").addEventListener("input", redraw);
  $("model").addEventListener("change", () => {
    const chosen = state.models.find((m) => m.name === $("model").value);
    if (chosen) showModel(chosen.name, chosen.version);
  });
  loadModels();
});
