// "Copy as curl / Python" snippets for the current form. Uploaded images are not pasted into the
// snippet as megabytes of base64: they become a placeholder that reads the file when run.

// An image the snippet reads from a local file (its name as uploaded) instead of inlining.
export class FileImage {
  constructor(name, mime) {
    this.name = name || "image.png";
    this.mime = mime || "image/png";
  }
}

const shellQuote = (text) => `'${String(text).replace(/'/g, "'\\''")}'`;

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

export function curlSnippet({ origin, model, key, body }) {
  const { files, text } = jsonWith(body, (_, i) => `"$${fileVar(i)}"`);
  const apiKey = key || "YOUR_API_KEY";
  const lines = [];
  if (files.length) {
    lines.push("# Images are read from files as data URIs (on macOS: base64 -i FILE)");
    files.forEach((file, i) => {
      lines.push(`${fileVar(i)}="data:${file.mime};base64,$(base64 -w0 ${shellQuote(file.name)})"`);
    });
  }
  lines.push(`curl -sS -X POST ${shellQuote(`${origin}/v2/${model}`)} \\`);
  lines.push(`  -H ${shellQuote(`x-api-key: ${apiKey}`)} \\`);
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
  lines.push(`curl -sS ${shellQuote(`${origin}/v2/requests/REQUEST_ID`)} -H ${shellQuote(`x-api-key: ${apiKey}`)}`);
  return lines.join("\n");
}

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

export function pythonSnippet({ origin, model, key, body }) {
  const files = [];
  const args = Object.entries(body).map(([k, v]) => `    ${k}=${pyLiteral(v, 4, files)},`);
  const lines = [];
  if (files.length) lines.push("import base64", "from pathlib import Path", "");
  lines.push("from segmind import SegmindClient", "");
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
    `client = SegmindClient(api_key=${JSON.stringify(key || "YOUR_API_KEY")}, base_url=${JSON.stringify(`${origin}/v1`)})`,
    "job = client.submit_async(",
    `    ${JSON.stringify(model)},`,
    ...args,
    ")",
    "result = job.wait()  # polls until COMPLETED; raises InferenceFailed with the server's error",
    "print(result[\"output\"], result[\"seed\"])",
  );
  return lines.join("\n");
}
