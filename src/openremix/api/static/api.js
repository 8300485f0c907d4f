// The API calls of the playground: submit, follow (Server-Sent Events over fetch), cancel, read.
// EventSource cannot send an x-api-key header, so the event stream is read with fetch().

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function headers(key, json) {
  const h = { Accept: "application/json" };
  if (key) h["x-api-key"] = key;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

// A JSON answer, or an ApiError carrying the server's `error` message.
async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = (body && body.error) || `HTTP ${response.status} ${response.statusText}`.trim();
    throw new ApiError(response.status, message, body);
  }
  return body;
}

export async function getConfig() {
  return answer(await fetch("/playground/config.json"));
}

export async function submit(model, body, key, signal) {
  const response = await fetch(`/v2/${encodeURIComponent(model)}`, {
    method: "POST", headers: headers(key, true), body: JSON.stringify(body), signal,
  });
  return answer(response);
}

export async function result(requestId, key, signal) {
  const response = await fetch(`/v2/requests/${encodeURIComponent(requestId)}`, {
    headers: headers(key), signal,
  });
  // A FAILED request answers 422 with its body: that is a result too, not a transport error.
  if (response.status === 422) return response.json();
  return answer(response);
}

export async function status(requestId, key, signal) {
  const response = await fetch(`/v2/requests/${encodeURIComponent(requestId)}/status`, {
    headers: headers(key), signal,
  });
  if (response.status === 422) return response.json();
  return answer(response);
}

export async function cancel(requestId, key) {
  const response = await fetch(`/v2/requests/${encodeURIComponent(requestId)}`, {
    method: "DELETE", headers: headers(key),
  });
  return answer(response);
}

// Splits a text/event-stream into {event, id, data} objects (data parsed as JSON when it is).
function parseEvent(block) {
  const event = { event: "message", id: null, data: "" };
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event.event = value;
    else if (field === "id") event.id = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  event.data = data.join("\n");
  try {
    event.data = JSON.parse(event.data);
  } catch {
    /* keep the text */
  }
  return event;
}

// Calls onEvent for each event of the request until the stream ends. Returns the terminal event
// (completed/failed), or null when the stream ended early (the caller then polls).
export async function follow(requestId, key, onEvent, signal) {
  const response = await fetch(`/v2/requests/${encodeURIComponent(requestId)}/events`, {
    headers: { ...headers(key), Accept: "text/event-stream" }, signal,
  });
  if (!response.ok || !response.body) {
    await answer(response);
    return null;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return null;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const event = parseEvent(block);
      if (!event) continue;
      onEvent(event);
      if (event.event === "completed" || event.event === "failed") {
        reader.cancel().catch(() => {});
        return event;
      }
    }
  }
}

export const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => {
    clearTimeout(timer);
    reject(signal.reason);
  }, { once: true });
});
