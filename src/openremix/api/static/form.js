// The form: builds every control of CONTRACT.md §3 from /playground/config.json, keeps the
// contract's combination rules (aspect ratio XOR resolution, style codes only with style type
// GENERAL and no reference images, palette preset XOR custom colours), and turns the form into
// a request body. The images it sends are read and shown by images.js.

import { FileImage } from "./snippets.js";

export const $ = (id) => document.getElementById(id);

export const form = {
  config: null,
  image: null, // {source: "file"|"url", url, name, mime, bytes, width, height}
  refs: [], // [{name, mime, url, bytes}]
  members: [], // [{color_hex, color_weight}]
  aspect: null,
  onChange: () => {},
  onImage: () => {},
};

export const changed = () => form.onChange();

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const titleCase = (word) => word.charAt(0) + word.slice(1).toLowerCase();
const ratioOf = (resolution) => {
  const [w, h] = resolution.split("x").map(Number);
  return w / h;
};
const times = (resolution) => resolution.replace("x", " × ");
export const megabytes = (bytes) => `${(bytes / 1048576).toFixed(bytes < 1048576 ? 2 : 1)} MB`;

// --- building the controls ---------------------------------------------------------------------

function segmented(container, name, values, selected, label) {
  container.replaceChildren(...values.map((value) => el("label", {},
    el("input", { type: "radio", name, value, checked: value === selected, onchange: changed }),
    el("span", {}, label(value)),
  )));
}

function options(select, values, selected, label = (v) => v) {
  select.replaceChildren(...values.map((value) => el("option", { value, selected: value === selected }, label(value))));
}

function aspectTile({ name, resolution }) {
  const ratio = ratioOf(resolution);
  const big = 26;
  const w = ratio >= 1 ? big : Math.round(big * ratio);
  const h = ratio >= 1 ? Math.round(big / ratio) : big;
  const input = el("input", { type: "radio", name: "aspect_ratio", value: name, class: "visually-hidden" });
  input.addEventListener("click", () => {
    // A second click on the chosen ratio clears it (back to the default resolution).
    if (form.aspect === name) input.checked = false;
    setAspect(input.checked ? name : null);
  });
  input.addEventListener("change", () => setAspect(input.checked ? name : null));
  return el("label", { class: "aspect", title: `${name.replace("x", ":")} · ${times(resolution)}` },
    input,
    el("span", { class: "aspect-shape", "aria-hidden": "true", style: { width: `${w}px`, height: `${h}px` } }),
    el("span", { class: "aspect-name" }, name.replace("x", ":")),
  );
}

function swatch({ name, members }) {
  const total = members.reduce((sum, m) => sum + m.color_weight, 0);
  const strip = el("span", { class: "swatch-strip", "aria-hidden": "true" },
    ...members.map((m) => el("i", { style: { background: m.color_hex, flexGrow: String(m.color_weight / total) } })));
  return el("label", { class: "swatch", title: members.map((m) => m.color_hex).join(" ") },
    el("input", { type: "radio", name: "palette_preset", value: name, class: "visually-hidden", onchange: changed }),
    strip,
    el("span", { class: "swatch-name" }, titleCase(name)),
  );
}

export function buildControls(config) {
  form.config = config;
  const { enums, defaults, limits } = config;
  segmented($("magic-prompt"), "magic_prompt", enums.magic_prompt, defaults.magic_prompt, titleCase);
  const formatName = (f) => (f === "webp" ? "WebP" : f.toUpperCase());
  segmented($("output-format"), "output_format", enums.output_format, defaults.output_format, formatName);
  options($("style-type"), enums.style_type, defaults.style_type, titleCase);
  options($("rendering-speed"), enums.rendering_speed, defaults.rendering_speed, titleCase);

  const ratios = [...config.aspect_ratios].sort((a, b) => ratioOf(a.resolution) - ratioOf(b.resolution));
  $("aspect-grid").replaceChildren(...ratios.map(aspectTile));

  const groups = { Portrait: [], Square: [], Landscape: [] };
  for (const res of config.resolutions) {
    const r = ratioOf(res);
    groups[r < 1 ? "Portrait" : r > 1 ? "Landscape" : "Square"].push(res);
  }
  $("resolution").replaceChildren(
    el("option", { value: "" }, `None (aspect ratio or ${times(defaults.resolution)})`),
    ...Object.entries(groups).map(([label, list]) => el("optgroup", { label },
      ...list.map((res) => el("option", { value: res }, times(res))))),
  );

  $("swatch-grid").replaceChildren(...config.palette_presets.map(swatch));

  const weight = $("image-weight");
  Object.assign(weight, { min: limits.image_weight_min, max: limits.image_weight_max, value: defaults.image_weight });
  $("seed").max = limits.seed_max;
  document.querySelectorAll("[data-limit=image_mb]").forEach((n) => { n.textContent = limits.image_bytes / 1048576; });
  wireControls();
  syncImageWeight();
  syncSize();
  syncStyleCodes();
  syncPalette();
}

// --- rules between controls --------------------------------------------------------------------

function setAspect(name) {
  form.aspect = name;
  if (name) $("resolution").value = ""; // the contract refuses both at once
  syncSize();
  changed();
}

export function outputSize() {
  const { config } = form;
  if (form.aspect) return config.aspect_ratios.find((a) => a.name === form.aspect).resolution;
  return $("resolution").value || config.defaults.resolution;
}

function syncSize() {
  const size = outputSize();
  const why = form.aspect ? `aspect ratio ${form.aspect.replace("x", ":")}`
    : $("resolution").value ? "exact resolution" : "default";
  $("size-summary").textContent = `Output ${times(size)} px (${why}); the input is centre-cropped to fit.`;
  form.onImage();
}

function syncImageWeight() {
  $("image-weight-value").textContent = $("image-weight").value;
}

function styleCodesAllowed() {
  return $("style-type").value === form.config.style_codes_style_type && form.refs.length === 0;
}

export function syncStyleCodes() {
  const input = $("style-codes");
  const allowed = styleCodesAllowed();
  if (!allowed && input.value) input.value = "";
  input.disabled = !allowed;
  const note = $("style-codes-note");
  if (form.refs.length) note.textContent = "Style codes cannot be combined with style reference images.";
  else if (!allowed) note.textContent = `Style codes need style type ${titleCase(form.config.style_codes_style_type)}.`;
  else note.textContent = "Each code names a reproducible style; every result reports the code it used.";
  showFieldError("style-codes", allowed ? styleCodeProblem() : null);
}

export function styleCodes() {
  return $("style-codes").value.split(/[\s,]+/).filter(Boolean);
}

// The server's own wording, so the message reads the same whichever side finds the mistake.
function styleCodeProblem() {
  const codes = styleCodes();
  const { limits, style_code_pattern: pattern } = form.config;
  const re = new RegExp(pattern, "i");
  if (codes.length > limits.style_codes) return `style_codes: may hold at most ${limits.style_codes} codes (got ${codes.length})`;
  const bad = codes.findIndex((code) => !re.test(code));
  if (bad < 0) return null;
  return `style_codes[${bad}]: must be a string of 8 hex digits such as 'A1B2C3D4' (got '${codes[bad]}')`;
}

function showFieldError(id, message) {
  const input = $(id);
  const box = $(`${id}-error`);
  box.textContent = message || "";
  box.hidden = !message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

function paletteMode() {
  return document.querySelector("input[name=palette_mode]:checked").value;
}

function presetChoice() {
  return document.querySelector("input[name=palette_preset]:checked")?.value || null;
}

function syncPalette() {
  const mode = paletteMode();
  $("preset-panel").hidden = mode !== "preset";
  $("custom-panel").hidden = mode !== "custom";
  if (mode === "custom" && !form.members.length) {
    // Start from the chosen preset's colours, so a preset can be tweaked.
    const preset = form.config.palette_presets.find((p) => p.name === presetChoice());
    form.members = preset ? preset.members.map((m) => ({ ...m }))
      : [{ color_hex: "#4f46e5", color_weight: 1 }];
  }
  renderMembers();
}

function renderMembers() {
  const { limits } = form.config;
  const list = $("members-list");
  list.replaceChildren(...form.members.map((member, i) => {
    const n = i + 1;
    const hex = el("code", { class: "member-hex" }, member.color_hex);
    const value = el("output", { class: "member-weight" }, member.color_weight.toFixed(2));
    return el("li", { class: "member" },
      el("input", {
        type: "color", value: member.color_hex, "aria-label": `Colour ${n}`,
        oninput: (e) => { member.color_hex = e.target.value; hex.textContent = e.target.value; changed(); },
      }),
      hex,
      el("input", {
        type: "range", min: limits.color_weight_min, max: limits.color_weight_max, step: "0.05",
        value: member.color_weight, "aria-label": `Weight of colour ${n}`,
        oninput: (e) => { member.color_weight = Number(e.target.value); value.textContent = member.color_weight.toFixed(2); changed(); },
      }),
      value,
      el("button", {
        type: "button", class: "icon-button", "aria-label": `Remove colour ${n}`, title: "Remove",
        disabled: form.members.length <= limits.palette_members_min,
        onclick: () => { form.members.splice(i, 1); renderMembers(); changed(); },
      }, "×"),
    );
  }));
  $("member-add").disabled = form.members.length >= limits.palette_members_max;
  $("members-hint").textContent = `${form.members.length} of ${limits.palette_members_max} colours · weight ${limits.color_weight_min}–${limits.color_weight_max}`;
}

// --- wiring the controls -----------------------------------------------------------------------

function wireControls() {
  $("resolution").addEventListener("change", () => {
    if ($("resolution").value) {
      document.querySelectorAll("input[name=aspect_ratio]").forEach((r) => { r.checked = false; });
      form.aspect = null;
    }
    syncSize();
    changed();
  });
  $("style-type").addEventListener("change", () => { syncStyleCodes(); changed(); });
  $("style-codes").addEventListener("input", () => { showFieldError("style-codes", styleCodeProblem()); changed(); });
  $("image-weight").addEventListener("input", () => { syncImageWeight(); changed(); });
  document.querySelectorAll("input[name=palette_mode]").forEach((r) => r.addEventListener("change", () => { syncPalette(); changed(); }));
  $("member-add").addEventListener("click", () => {
    form.members.push({ color_hex: "#f59e0b", color_weight: 0.5 });
    renderMembers();
    changed();
    $("members-list").lastElementChild?.querySelector("input[type=color]")?.focus();
  });
  $("seed-random").addEventListener("click", () => { $("seed").value = ""; showFieldError("seed", null); changed(); });
  for (const id of ["prompt", "negative-prompt", "seed", "rendering-speed"]) $(id).addEventListener("input", changed);
  $("prompt").addEventListener("input", () => {
    const n = $("prompt").value.length;
    $("prompt-count").textContent = n ? `${n.toLocaleString()} / ${form.config.limits.prompt_chars.toLocaleString()}` : "";
    if (n) showFieldError("prompt", null);
  });
}

// --- the request body --------------------------------------------------------------------------

const radioValue = (name) => document.querySelector(`input[name=${name}]:checked`)?.value;

function seedProblem(text) {
  const max = form.config.limits.seed_max;
  if (!/^\d+$/.test(text) || Number(text) > max) return `seed: must be an integer from 0 to ${max} (got ${text})`;
  return null;
}

// The JSON body for the current form, and the first broken rule (field id + message) if any.
// With `forSnippet`, uploaded images are FileImage placeholders instead of data URIs.
export function requestBody({ forSnippet = false } = {}) {
  const { defaults, limits } = form.config;
  const problems = [];
  const body = {};
  const imageValue = (img) => (forSnippet && img.source === "file" ? new FileImage(img.name, img.mime) : img.url);

  if (form.image) body.image = imageValue(form.image);
  else problems.push({ id: "image-choose", message: "image: is required: choose, drop or paste an image, or give its URL" });

  const prompt = $("prompt").value;
  if (prompt.trim()) body.prompt = prompt;
  else problems.push({ id: "prompt", message: "prompt: must not be empty" });
  if (prompt.length > limits.prompt_chars) problems.push({ id: "prompt", message: `prompt: must be at most ${limits.prompt_chars.toLocaleString()} characters (got ${prompt.length.toLocaleString()})` });

  const negative = $("negative-prompt").value;
  if (negative.trim()) body.negative_prompt = negative;
  body.image_weight = Number($("image-weight").value);

  const seed = $("seed").value.trim();
  if (seed) {
    const problem = seedProblem(seed);
    if (problem) problems.push({ id: "seed", message: problem });
    else body.seed = Number(seed);
  }
  if (form.aspect) body.aspect_ratio = form.aspect;
  else if ($("resolution").value) body.resolution = $("resolution").value;

  const choices = {
    rendering_speed: $("rendering-speed").value,
    magic_prompt: radioValue("magic_prompt"),
    style_type: $("style-type").value,
  };
  for (const [field, value] of Object.entries(choices)) if (value && value !== defaults[field]) body[field] = value;

  const codes = styleCodes();
  if (codes.length && !$("style-codes").disabled) {
    const problem = styleCodeProblem();
    if (problem) problems.push({ id: "style-codes", message: problem });
    body.style_codes = codes;
  }
  if (form.refs.length) {
    const total = form.refs.reduce((sum, r) => sum + r.bytes, 0);
    if (total > limits.style_reference_bytes) problems.push({ id: "refs-choose", message: `style_reference_images: at most ${limits.style_reference_bytes / 1048576} MB together (got ${megabytes(total)})` });
    body.style_reference_images = form.refs.map(imageValue);
  }

  const mode = paletteMode();
  if (mode === "preset") {
    const name = presetChoice();
    if (name) body.color_palette = { name };
    else problems.push({ id: "swatch-grid", message: "color_palette: choose a preset, or set the palette to None" });
  } else if (mode === "custom" && form.members.length) {
    body.color_palette = { members: form.members.map((m) => ({ color_hex: m.color_hex, color_weight: m.color_weight })) };
  }
  const format = radioValue("output_format");
  if (format && format !== defaults.output_format) body.output_format = format;
  return { body, problem: problems[0] || null };
}

export function markProblem(problem) {
  if (problem.id === "prompt" || problem.id === "seed" || problem.id === "style-codes") showFieldError(problem.id, problem.message);
  const target = $(problem.id);
  target?.scrollIntoView({ block: "center", behavior: "smooth" });
  (target?.querySelector?.("input") || target)?.focus({ preventScroll: true });
}

export function setSeed(seed) {
  $("seed").value = String(seed);
  showFieldError("seed", null);
  changed();
}

export function useStyleCode(code) {
  if (form.refs.length) return;
  $("style-type").value = form.config.style_codes_style_type;
  syncStyleCodes();
  const codes = styleCodes();
  if (!codes.map((c) => c.toUpperCase()).includes(code)) codes.push(code);
  $("style-codes").value = codes.join(", ");
  showFieldError("style-codes", styleCodeProblem());
  changed();
}
