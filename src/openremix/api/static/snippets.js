// "Copy as" snippets for the current form, one per wire: the segmind wire as curl and as the
// segmind SDK, Ideogram's remix API as curl, and OpenAI's images API as the `openai` SDK.
// Uploaded images are not pasted in as megabytes of base64: they become a placeholder that reads
// the file when run. The API key is never printed: every snippet reads $OPENREMIX_API_KEY.

export const KEY_VARIABLE = "OPENREMIX_API_KEY";

// An image the snippet reads from a local file (its name as uploaded) instead of inlining.
export class FileImage {
  constructor(name, mime) {
    this.name = name || "image.png";
    this.mime = mime || "image/png";
  }
}

const shellQuote = (text) => `'${String(text).replace(/'/g, "'\\''")}'`;
const KEY_COMMENT = `# The key is read from the environment: export ${KEY_VARIABLE}=<your key>`;

// JSON text with every FileImage replaced by `render(fileImage, index)` (already a JSON literal).
function jsonWith(body, render) {
  const files = [];
  const marked = JSON.stringify(body, (_, value) => {
    if (value instanceof FileImage) {
      files.push(value);
      return `\uE000FILE${files.length - 1}\uE000`;
    }
    return value;
  }, 2);
  return {
    files,
    text: (escape) => escape(marked).replace(/"\uE000FILE(\d+)\uE000"/g, (_, i) => render(files[+i], +i)),
  };
}

const fileVar = (index) => (index === 0 ? "IMAGE" : `IMAGE_${index + 1}`);

// A file name for an image given by URL: the URL's own when it names an image, else `fallback`.
function urlFileName(url, fallback) {
  const last = String(url).split(/[?#]/)[0].split("/").pop() || "";
  return /^[\w.-]+\.(jpe?g|png|webp)$/i.test(last) ? last : fallback;
}

// --- segmind: curl ------------------------------------------------------------------------------

export function curlSnippet({ origin, model, body }) {
  const { files, text } = jsonWith(body, (_, i) => `"$${fileVar(i)}"`);
  const lines = [KEY_COMMENT];
  if (files.length) {
    lines.push("# Images are read from files as data URIs (on macOS: base64 -i FILE)");
    files.forEach((file, i) => {
      lines.push(`${fileVar(i)}="data:${file.mime};base64,$(base64 -w0 ${shellQuote(file.name)})"`);
    });
  }
  lines.push(`curl -sS -X POST ${shellQuote(`${origin}/v2/${model}`)} \\`);
  lines.push(`  -H "x-api-key: $${KEY_VARIABLE}" \\`);
  lines.push("  -H 'Content-Type: application/json' \\");
  if (files.length) {
    // An unquoted here-document expands the $IMAGE variables: escape what else it would expand.
    lines.push("  -d @- <<EOF");
    lines.push(text((json) => json.replace(/[\\$`]/g, (c) => `\\${c}`)));
    lines.push("EOF");
  } else {
    lines.push(`  -d ${shellQuote(text((json) => json))}`);
  }
  lines.push("");
  lines.push("# It answers with a request_id; poll until \"status\" is \"COMPLETED\", then fetch \"output\":");
  lines.push(`curl -sS ${shellQuote(`${origin}/v2/requests/REQUEST_ID`)} -H "x-api-key: $${KEY_VARIABLE}"`);
  return lines.join("\n");
}

// --- Ideogram's remix API: curl, multipart -----------------------------------------------------

// A `-F name=value` part; `--form-string` where curl would read more into the value: a file
// (a leading @ or <), a quoted string (a leading "), or a part's options (after a ";"), so any
// prompt arrives as typed.
function formPart(name, value) {
  const text = String(value);
  const literal = /^[@<"]/.test(text) || text.includes(";");
  return `${literal ? "--form-string" : "-F"} ${shellQuote(`${name}=${text}`)}`;
}

const filePart = (name, file) => `-F ${name}=@${shellQuote(file.name)}`;

export function ideogramCurlSnippet({ origin, body }) {
  const lines = [KEY_COMMENT, "# Ideogram's remix API answers when the image is ready, with its URL."];
  const parts = [];
  const urls = [];
  const image = (name, value, fallback) => {
    if (value instanceof FileImage) return filePart(name, value);
    // Ideogram's API takes files only: download an image given by URL first.
    const file = new FileImage(value.startsWith("data:") ? fallback : urlFileName(value, fallback));
    urls.push([value, file.name]);
    return filePart(name, file);
  };
  for (const [name, value] of Object.entries(body)) {
    if (name === "output_format") continue; // Ideogram's API has no output format
    if (name === "image") parts.push(image(name, value, "input.jpg"));
    else if (name === "style_reference_images") value.forEach((v, i) => parts.push(image(name, v, `reference-${i + 1}.jpg`)));
    else if (name === "style_codes") value.forEach((code) => parts.push(formPart(name, code)));
    else if (typeof value === "object") parts.push(formPart(name, JSON.stringify(value)));
    else parts.push(formPart(name, value));
  }
  for (const [url, name] of urls) {
    if (url.startsWith("data:")) lines.push(`# ${name}: save the pasted image as ${name}`);
    else lines.push(`curl -sS -o ${shellQuote(name)} ${shellQuote(url)}`);
  }
  lines.push(`curl -sS -X POST ${shellQuote(`${origin}/v1/ideogram-v3/remix`)} \\`);
  lines.push(`  -H "Api-Key: $${KEY_VARIABLE}" \\`);
  parts.forEach((part, i) => lines.push(`  ${part}${i < parts.length - 1 ? " \\" : ""}`));
  return lines.join("\n");
}

// --- Python ------------------------------------------------------------------------------------

// A Python literal for a JSON value (strings keep JSON's escapes, which Python reads the same).
function pyLiteral(value, indent, files) {
  const pad = " ".repeat(indent);
  if (value instanceof FileImage) {
    files.push(value);
    return `data_uri(${JSON.stringify(value.name)}, ${JSON.stringify(value.mime)})`;
  }
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number" || typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    const items = value.map((v) => `${pad}    ${pyLiteral(v, indent + 4, files)},`);
    return `[\n${items.join("\n")}\n${pad}]`;
  }
  const entries = Object.entries(value);
  const flat = entries.every(([, v]) => v === null || typeof v !== "object");
  if (flat && entries.length <= 3) {
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}: ${pyLiteral(v, indent, files)}`).join(", ")}}`;
  }
  const items = entries.map(([k, v]) => `${pad}    ${JSON.stringify(k)}: ${pyLiteral(v, indent + 4, files)},`);
  return `{\n${items.join("\n")}\n${pad}}`;
}

const pyKey = `os.environ[${JSON.stringify(KEY_VARIABLE)}]`;

export function pythonSnippet({ origin, model, body }) {
  const files = [];
  const args = Object.entries(body).map(([k, v]) => `    ${k}=${pyLiteral(v, 4, files)},`);
  const lines = [KEY_COMMENT];
  if (files.length) lines.push("import base64");
  lines.push("import os");
  if (files.length) lines.push("from pathlib import Path");
  lines.push("", "from segmind import SegmindClient", "");
  if (files.length) {
    lines.push(
      "",
      "def data_uri(path: str, mime: str) -> str:",
      "    return f\"data:{mime};base64,\" + base64.b64encode(Path(path).read_bytes()).decode()",
      "",
      "",
    );
  }
  lines.push(
    `client = SegmindClient(api_key=${pyKey}, base_url=${JSON.stringify(`${origin}/v1`)})`,
    "job = client.submit_async(",
    `    ${JSON.stringify(model)},`,
    ...args,
    ")",
    "result = job.wait()  # polls until COMPLETED; raises InferenceFailed with the server's error",
    "print(result[\"output\"], result[\"seed\"])",
  );
  return lines.join("\n");
}

// An image argument for the openai SDK: an open file, or the bytes at a URL.
function pyImage(value, fetched) {
  if (value instanceof FileImage) return `open(${JSON.stringify(value.name)}, "rb")`;
  fetched.push(value);
  const name = value.startsWith("data:") ? "image.jpg" : urlFileName(value, "image.jpg");
  return `(${JSON.stringify(name)}, urlopen(${JSON.stringify(value)}).read())`;
}

// `size`: the output size the form picks (OpenAI's wire maps a size to the nearest allowed
// resolution; an allowed one is kept as it is).
export function openaiSnippet({ origin, model, body, size }) {
  const fetched = [];
  const images = [body.image, ...(body.style_reference_images || [])].map((v) => pyImage(v, fetched));
  const extra = {};
  let json = false;
  for (const [name, value] of Object.entries(body)) {
    if (["image", "style_reference_images", "prompt", "aspect_ratio", "resolution", "output_format"].includes(name)) continue;
    if (typeof value === "object") {
      extra[name] = `json.dumps(${pyLiteral(value, 8, [])})`; // JSON text form fields
      json = true;
    } else {
      extra[name] = pyLiteral(value, 8, []);
    }
  }
  const lines = [KEY_COMMENT];
  if (json) lines.push("import json");
  lines.push("import os");
  if (fetched.length) lines.push("from urllib.request import urlopen");
  lines.push("", "from openai import OpenAI", "");
  lines.push(`client = OpenAI(base_url=${JSON.stringify(`${origin}/v1`)}, api_key=${pyKey})`);
  lines.push("result = client.images.edit(");
  lines.push(`    model=${JSON.stringify(model)},`);
  lines.push(images.length > 1
    ? `    image=[${images.join(", ")}],  # the first is remixed, the others are style references`
    : `    image=${images[0]},`);
  lines.push(`    prompt=${pyLiteral(body.prompt, 4, [])},`);
  if (body.aspect_ratio || body.resolution) lines.push(`    size=${JSON.stringify(size)},`);
  if (body.output_format) lines.push(`    output_format=${JSON.stringify(body.output_format)},`);
  const entries = Object.entries(extra);
  if (entries.length) {
    lines.push("    extra_body={");
    entries.forEach(([k, v]) => lines.push(`        ${JSON.stringify(k)}: ${v},`));
    lines.push("    },");
  }
  lines.push(")");
  lines.push("print(result.data[0].url)");
  return lines.join("\n");
}

// The snippet kinds, by the id of their tab.
export const SNIPPETS = {
  "tab-curl": { render: curlSnippet, copied: "the curl snippet" },
  "tab-python": { render: pythonSnippet, copied: "the segmind SDK snippet" },
  "tab-ideogram": { render: ideogramCurlSnippet, copied: "the Ideogram curl snippet" },
  "tab-openai": { render: openaiSnippet, copied: "the openai SDK snippet" },
};
