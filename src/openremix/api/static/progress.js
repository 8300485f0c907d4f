// The progress line of a run (its phase, the time left counted down between the server's
// events, the time elapsed) and the live previews shown in the result frame while it runs.

import { $ } from "./form.js";

// The run on the page. `eta`: the server's last time left and when it came ({seconds, at}),
// counted down between events; null while the server has no measurement (it never guesses).
export const run = { id: null, controller: null, started: 0, timer: null, phase: "", eta: null };

export const seconds = (s) => `${Number(s).toFixed(s < 10 ? 2 : 1)} s`;

export function setPhase(text, fraction) {
  run.phase = text;
  const bar = $("progress-bar");
  const known = fraction !== null && fraction !== undefined;
  bar.classList.toggle("indeterminate", !known);
  bar.style.width = known ? `${Math.round(fraction * 100)}%` : "";
  if (known) bar.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
  else bar.removeAttribute("aria-valuenow");
  tick();
}

// The time left, counted down from the server's last word; "" when unknown.
function etaText() {
  if (!run.eta) return "";
  const left = run.eta.seconds - (performance.now() - run.eta.at) / 1000;
  return left >= 0.1 ? ` · about ${seconds(left)} left` : " · almost done";
}

export function tick() {
  const elapsed = run.started ? (performance.now() - run.started) / 1000 : 0;
  const live = run.id || run.controller;
  $("progress-text").textContent = live ? `${run.phase}${etaText()} · ${elapsed.toFixed(1)} s` : run.phase;
}

function showPreview({ image, step, total }) {
  if (!run.id || typeof image !== "string" || !image.startsWith("data:image/")) return;
  const img = $("result-preview");
  img.src = image;
  img.hidden = false;
  $("result-placeholder").hidden = true;
  const badge = $("preview-badge");
  badge.textContent = `Preview · step ${step} of ${total}`;
  badge.hidden = false;
}

export function hidePreview() {
  const img = $("result-preview");
  img.hidden = true;
  img.removeAttribute("src");
  $("preview-badge").hidden = true;
}

export function onProgress({ event, data }) {
  if (event === "preview") {
    showPreview(data);
    return;
  }
  run.eta = null;
  if (event === "queued") {
    const p = data.queue_position;
    setPhase(p === null || p === undefined ? "Queued" : `Queued · ${p === 0 ? "next in line" : `${p} ahead`}`, null);
  } else if (event === "processing") {
    const { step, total, eta_seconds: eta } = data;
    // eta_seconds is null until the server has measured a step; it never guesses.
    if (typeof eta === "number" && eta > 0) run.eta = { seconds: eta, at: performance.now() };
    if (step && total) setPhase(`Processing · step ${step} of ${total}`, step / total);
    else setPhase("Processing", null);
  }
}
