// The playground page: the API key, a run (submit, live progress, cancel), the result, and the
// code snippets. The form and its rules live in form.js, its images in images.js, the HTTP
// calls in api.js.

import * as api from "./api.js";
import {
  $, buildControls, form, markProblem, outputSize, requestBody, setSeed, useStyleCode,
} from "./form.js";
import { setErrorReporter, wireImages } from "./images.js";
import { hidePreview, onProgress, run, seconds, setPhase, tick } from "./progress.js";
import { FileImage, SNIPPETS } from "./snippets.js";

const KEY_STORAGE = "openremix.apiKey";
let snippetTab = "tab-curl";
let shownProblem = null; // the form's broken rule on screen, cleared once it no longer holds

const apiKey = () => $("api-key").value.trim();

// --- messages ----------------------------------------------------------------------------------

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
  shownProblem = null;
}

// After an edit: a form error on screen that no longer holds goes away.
function recheckProblem() {
  if (!shownProblem || !form.config) return;
  const { problem } = requestBody();
  if (!problem || problem.id !== shownProblem.id || problem.message !== shownProblem.message) showError("");
}

let toastTimer = null;
function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 2200);
}

// --- the API key -------------------------------------------------------------------------------

function wireKey() {
  const input = $("api-key");
  $("key-form").addEventListener("submit", (e) => e.preventDefault());
  input.value = localStorage.getItem(KEY_STORAGE) || "";
  input.addEventListener("input", () => {
    if (apiKey()) localStorage.setItem(KEY_STORAGE, apiKey());
    else localStorage.removeItem(KEY_STORAGE);
    renderSnippet();
  });
  $("key-toggle").addEventListener("click", (e) => {
    const show = input.type === "password";
    input.type = show ? "text" : "password";
    e.currentTarget.textContent = show ? "Hide" : "Show";
    e.currentTarget.setAttribute("aria-pressed", String(show));
  });
}

// --- the input preview, with the crop the server will make -------------------------------------

function renderInput() {
  const image = form.image;
  $("input-placeholder").hidden = Boolean(image);
  $("input-wrap").hidden = !image;
  if (!image) {
    $("input-meta").textContent = "";
    return;
  }
  const preview = $("input-preview");
  if (preview.getAttribute("src") !== image.url) preview.src = image.url;
  $("input-meta").textContent = image.width ? `${image.width} × ${image.height}` : "";
  layoutInput();
}

// Places the preview over the rectangle the image is drawn in, and the crop box inside it.
function layoutInput() {
  const image = form.image;
  const wrap = $("input-wrap");
  if (!image || !image.width) {
    Object.assign(wrap.style, { left: "0", top: "0", width: "100%", height: "100%" });
    $("crop-box").hidden = true;
    return;
  }
  const canvas = $("input-canvas");
  const scale = Math.min(canvas.clientWidth / image.width, canvas.clientHeight / image.height);
  const w = image.width * scale;
  const h = image.height * scale;
  Object.assign(wrap.style, {
    left: `${(canvas.clientWidth - w) / 2}px`, top: `${(canvas.clientHeight - h) / 2}px`,
    width: `${w}px`, height: `${h}px`,
  });
  const [outW, outH] = outputSize().split("x").map(Number);
  const source = image.width / image.height;
  const target = outW / outH;
  const cw = source > target ? target / source : 1;
  const ch = source > target ? 1 : source / target;
  const box = $("crop-box");
  box.hidden = cw > 0.995 && ch > 0.995;
  Object.assign(box.style, {
    left: `${((1 - cw) / 2) * 100}%`, top: `${((1 - ch) / 2) * 100}%`,
    width: `${cw * 100}%`, height: `${ch * 100}%`,
  });
}

// --- snippets ----------------------------------------------------------------------------------

// The snippets never carry the key: they read it from the environment (snippets.js).
function renderSnippet() {
  if (!form.config) return;
  const { body } = requestBody({ forSnippet: true });
  // A snippet is useful before the form is complete: stand-ins for the two required fields.
  const full = { image: new FileImage("photo.jpg", "image/jpeg"), prompt: "describe the remix", ...body };
  const spec = { origin: window.location.origin, model: form.config.model, body: full, size: outputSize() };
  $("snippet-code").textContent = SNIPPETS[snippetTab].render(spec);
}

function selectTab(tab) {
  snippetTab = tab.id;
  for (const t of document.querySelectorAll("[role=tab]")) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
  }
  $("snippet").setAttribute("aria-labelledby", tab.id);
  renderSnippet();
}

function wireSnippets() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (e) => {
      if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
      const next = tabs[(tabs.indexOf(tab) + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
      selectTab(next);
      next.focus();
    });
  }
  $("copy-snippet").addEventListener("click", async () => {
    const text = $("snippet-code").textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const range = document.createRange();
      range.selectNodeContents($("snippet-code"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      document.execCommand("copy");
    }
    toast(`Copied ${SNIPPETS[snippetTab].copied}`);
  });
}

// --- a run: submit, follow, show ---------------------------------------------------------------

// The terminal status body: from the event stream, or by polling when the stream is cut short.
async function terminalStatus(id, key, signal) {
  try {
    const event = await api.follow(id, key, onProgress, signal);
    if (event) return event.data;
  } catch (error) {
    if (signal.aborted || error instanceof api.ApiError) throw error;
  }
  for (;;) {
    const body = await api.status(id, key, signal);
    if (body.status === "COMPLETED" || body.status === "FAILED") return body;
    const progress = body.progress || {};
    onProgress({ event: body.status.toLowerCase(), data: { ...body, ...progress } });
    await api.sleep(1000, signal);
  }
}

// Takes the last result off the page: what is shown must belong to the run on screen.
function clearResult() {
  hidePreview();
  const img = $("result-image");
  img.hidden = true;
  img.removeAttribute("src");
  $("result-placeholder").hidden = false;
  $("result-meta").textContent = "";
  $("result-details").hidden = true;
}

function startRun(controller) {
  Object.assign(run, { id: null, controller, started: performance.now(), eta: null });
  showError("");
  clearResult();
  $("submit").disabled = true;
  $("submit").firstChild.textContent = "Remixing… ";
  $("cancel").hidden = false;
  $("cancel").disabled = false;
  $("progress").hidden = false;
  $("progress").dataset.outcome = "";
  $("result-canvas").classList.add("busy");
  $("result-placeholder").textContent = "Remixing…";
  setPhase("Submitting", null);
  run.timer = setInterval(tick, 100);
}

const OUTCOMES = {
  completed: (t) => `Completed in ${t}`,
  cancelled: (t) => `Cancelled after ${t}; the credits were refunded`,
  failed: (t) => `Failed after ${t}`,
  stopped: () => "Stopped",
};

// Ends the run's UI; `outcome` is a key of OUTCOMES, or "" to hide the progress line.
function endRun(outcome, fraction) {
  clearInterval(run.timer);
  const elapsed = seconds((performance.now() - run.started) / 1000);
  Object.assign(run, { id: null, controller: null, eta: null });
  hidePreview();
  setPhase(outcome ? OUTCOMES[outcome](elapsed) : "", fraction);
  $("progress").dataset.outcome = outcome;
  $("progress").hidden = !outcome;
  $("submit").disabled = false;
  $("submit").firstChild.textContent = "Remix ";
  $("cancel").hidden = true;
  $("result-canvas").classList.remove("busy");
  $("result-placeholder").textContent = "The remix appears here";
  $("result-placeholder").hidden = !$("result-image").hidden;
}

function loadImage(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error(`The result image could not be loaded from ${url}`));
    img.src = url;
  });
}

function chip(text, extra) {
  const span = document.createElement("span");
  span.className = "chip";
  span.textContent = text;
  if (extra) span.append(extra);
  return span;
}

async function showResult(body) {
  const img = $("result-image");
  await loadImage(img, body.output);
  hidePreview();
  img.hidden = false;
  $("result-placeholder").hidden = true;
  const file = (body.images || [])[0] || {};
  $("result-meta").textContent = `${img.naturalWidth} × ${img.naturalHeight} · ${(file.content_type || "").replace("image/", "")}`;

  $("result-seed").textContent = String(body.seed);
  $("reuse-seed").dataset.seed = String(body.seed);
  $("result-prompt").textContent = body.prompt || "";
  $("result-resolution").textContent = (body.resolution || "").replace("x", " × ");
  $("result-style-type").textContent = body.style_type || "";

  const details = body.details || {};
  const styles = (details.styles || []).map((s) => chip(
    typeof s === "string" ? s : `${s.name}${s.weight !== undefined ? ` ${Math.round(s.weight * 100)}%` : ""}`));
  $("result-styles").replaceChildren(...styles);
  $("result-styles-row").hidden = !styles.length;
  const codes = (details.style_codes || []).map((code) => {
    const use = document.createElement("button");
    use.type = "button";
    use.className = "chip-action";
    use.textContent = "Use";
    use.setAttribute("aria-label", `Use style code ${code}`);
    use.disabled = form.refs.length > 0;
    use.title = use.disabled ? "Style codes cannot be combined with style reference images" : "Put this code in the form";
    use.addEventListener("click", () => { useStyleCode(code); toast(`Style code ${code} added`); });
    return chip(code, use);
  });
  $("result-codes").replaceChildren(...codes);
  $("result-codes-row").hidden = !codes.length;

  const m = body.metrics || {};
  const parts = [["inference", m.inference_time], ["queue", m.queue_time], ["total", m.total_time]]
    .filter(([, v]) => typeof v === "number").map(([k, v]) => `${k} ${seconds(v)}`);
  if (typeof m.cost === "number") parts.push(`cost ${m.cost}`);
  $("result-metrics").textContent = parts.join(" · ");
  const warnings = body.warnings || [];
  $("result-warnings").textContent = warnings.join("; ");
  $("result-warnings-row").hidden = !warnings.length;
  $("result-request-id").textContent = body.request_id;
  const download = $("result-download");
  download.href = body.output;
  download.download = file.file_name || "";
  $("result-details").hidden = false;
}

async function submit(event) {
  event.preventDefault();
  if (run.controller) return;
  const { body, problem } = requestBody();
  if (problem) {
    showError(problem.message);
    shownProblem = problem;
    markProblem(problem);
    return;
  }
  const key = apiKey();
  const controller = new AbortController();
  startRun(controller);
  try {
    const submitted = await api.submit(form.config.model, body, key, controller.signal);
    run.id = submitted.request_id;
    setPhase("Queued", null);
    const terminal = await terminalStatus(run.id, key, controller.signal);
    if (terminal.status === "COMPLETED") {
      setPhase("Loading the image", 1);
      await showResult(await api.result(terminal.request_id, key, controller.signal));
      endRun("completed", 1);
    } else if (terminal.error === "cancelled") {
      endRun("cancelled", 0);
    } else {
      endRun("failed", 0);
      showError(terminal.error || "The request failed");
    }
  } catch (error) {
    endRun(controller.signal.aborted ? "stopped" : "", 0);
    if (!controller.signal.aborted) {
      showError(error instanceof api.ApiError ? error.message : `Could not reach the server: ${error.message}`);
    }
    if (error.status === 401) $("api-key").focus();
  }
}

async function cancel() {
  if (!run.controller) return;
  $("cancel").disabled = true;
  if (!run.id) {
    run.controller.abort(new DOMException("cancelled", "AbortError"));
    return;
  }
  setPhase("Cancelling", null);
  try {
    await api.cancel(run.id, apiKey());
  } catch (error) {
    showError(error.message);
  }
}

// --- start -------------------------------------------------------------------------------------

async function start() {
  wireKey();
  wireSnippets();
  setErrorReporter(showError);
  form.onChange = () => {
    renderSnippet();
    recheckProblem();
  };
  form.onImage = () => {
    renderInput();
    recheckProblem();
  };
  new ResizeObserver(layoutInput).observe($("input-canvas"));
  try {
    buildControls(await api.getConfig());
    wireImages();
  } catch (error) {
    showError(`Could not load the playground settings: ${error.message}`);
    return;
  }
  $("remix-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  $("reuse-seed").addEventListener("click", (e) => {
    setSeed(e.currentTarget.dataset.seed);
    toast(`Seed ${e.currentTarget.dataset.seed} is in the form`);
  });
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
      e.preventDefault();
      $("remix-form").requestSubmit();
    } else if (e.key === "Escape" && run.controller) {
      cancel();
    }
  });
  renderSnippet();
  document.body.dataset.ready = "true";
}

start();
