// The input image and the style reference images: read from a file, a URL, a drop or a paste,
// checked against the contract's limits, and shown. The form (form.js) reads them from
// `form.image` and `form.refs`; `wireImages` attaches the controls once the form is built.

import { $, changed, el, form, megabytes, syncStyleCodes } from "./form.js";

const ACCEPTED = ["image/jpeg", "image/png", "image/webp"];

// --- images ------------------------------------------------------------------------------------

function readDataUri(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function imageSize(url) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve({ width: img.naturalWidth, height: img.naturalHeight });
    img.onerror = () => resolve({ width: 0, height: 0 });
    img.src = url;
  });
}

async function readImage(file, field) {
  const { limits } = form.config;
  if (!ACCEPTED.includes(file.type)) throw new Error(`${field}: must be a JPEG, PNG or WebP image (got ${file.type || "an unknown type"})`);
  if (file.size > limits.image_bytes) throw new Error(`${field}: at most ${limits.image_bytes / 1048576} MB (got ${megabytes(file.size)})`);
  const url = await readDataUri(file);
  const { width, height } = await imageSize(url);
  if (!width) throw new Error(`${field}: the browser could not decode ${file.name || "this file"}`);
  return { source: "file", url, name: file.name || `pasted.${file.type.split("/")[1]}`, mime: file.type, bytes: file.size, width, height };
}

export let reportError = () => {};
export function setErrorReporter(fn) { reportError = fn; }

export async function setImageFile(file) {
  try {
    form.image = await readImage(file, "image");
  } catch (error) {
    reportError(error.message);
    return;
  }
  $("image-url").value = "";
  showImage();
}

async function setImageUrl(url) {
  url = url.trim();
  if (!url) {
    if (form.image?.source === "url") form.image = null;
    showImage();
    return;
  }
  form.image = { source: "url", url, name: url.split("/").pop() || url, width: 0, height: 0 };
  showImage();
  const { width, height } = await imageSize(url);
  if (form.image?.url === url) Object.assign(form.image, { width, height });
  form.onImage();
}

function showImage() {
  const image = form.image;
  $("drop-empty").hidden = Boolean(image && image.source === "file");
  $("drop-file").hidden = !(image && image.source === "file");
  if (image?.source === "file") {
    $("image-thumb").src = image.url;
    $("image-name").textContent = image.name;
    $("image-info").textContent = `${image.width} × ${image.height} · ${megabytes(image.bytes)}`;
  }
  form.onImage();
  changed();
}

async function addRefs(files) {
  const { limits } = form.config;
  for (const file of files) {
    if (form.refs.length >= limits.style_reference_images) {
      reportError(`style_reference_images: may hold at most ${limits.style_reference_images} images`);
      break;
    }
    try {
      form.refs.push(await readImage(file, `style_reference_images[${form.refs.length}]`));
    } catch (error) {
      reportError(error.message);
    }
  }
  renderRefs();
}

function renderRefs() {
  $("refs-list").replaceChildren(...form.refs.map((ref, i) => el("li", { class: "thumb" },
    el("img", { src: ref.url, alt: `Style reference ${i + 1}: ${ref.name}` }),
    el("button", {
      type: "button", class: "thumb-remove", "aria-label": `Remove style reference ${i + 1} (${ref.name})`, title: "Remove",
      onclick: () => { form.refs.splice(i, 1); renderRefs(); },
    }, "×"),
  )));
  syncStyleCodes();
  changed();
}

function dropzone(zone, onFiles, onUrl) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    const files = [...e.dataTransfer.files];
    if (files.length) onFiles(files);
    else if (onUrl) {
      const url = e.dataTransfer.getData("text/uri-list") || e.dataTransfer.getData("text/plain");
      if (url) onUrl(url.split("\n")[0]);
    }
  });
}

export function wireImages() {
  const imageInput = $("image-file");
  $("image-choose").addEventListener("click", () => imageInput.click());
  $("image-replace").addEventListener("click", () => imageInput.click());
  imageInput.addEventListener("change", () => {
    if (imageInput.files[0]) setImageFile(imageInput.files[0]);
    imageInput.value = "";
  });
  $("image-clear").addEventListener("click", () => { form.image = null; showImage(); $("image-choose").focus(); });
  const url = $("image-url");
  url.addEventListener("change", () => setImageUrl(url.value));
  dropzone($("drop-zone"), (files) => setImageFile(files[0]), (u) => { url.value = u; setImageUrl(u); });

  // A pasted image becomes the input, wherever the focus is; pasted text behaves as usual.
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return;
    e.preventDefault();
    setImageFile(item.getAsFile());
  });
  // A file dropped beside a drop zone must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  const refsInput = $("refs-file");
  $("refs-choose").addEventListener("click", () => refsInput.click());
  refsInput.addEventListener("change", () => { addRefs([...refsInput.files]); refsInput.value = ""; });
  dropzone($("refs-zone"), addRefs);
}
