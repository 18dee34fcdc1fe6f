// The console's only way to the service: the public HTTP API, with the key the user
// typed. The key lives in sessionStorage (gone with the tab), goes in the
// Authorization header, never in a URL or a cookie.

const KEY = "rapport.key";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

/** An API error carrying the problem document's title and detail. */
export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

/** A request to the API with the key; resolves to the Response, throws ApiError. */
export async function call(path, options = {}) {
  const { method = "GET", json, form, headers = {}, key, signal, cache = "no-store" } = options;
  const init = { method, headers: { ...headers }, credentials: "omit", cache, signal };
  const bearer = key ?? session.key;
  if (bearer) init.headers.Authorization = `Bearer ${bearer}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "The service cannot be reached", "check that rapport is running");
  }
  if (!response.ok) throw await problem(response);
  return response;
}

async function problem(response) {
  let title = `HTTP ${response.status}`;
  let detail = "";
  try {
    const body = await response.json();
    title = body.title || title;
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    // not a problem document
  }
  if (response.status === 401) {
    return new ApiError(401, "This key was not accepted", "it is unknown, revoked or expired");
  }
  return new ApiError(response.status, title, detail);
}

export const getJSON = async (path, options) => (await call(path, options)).json();

export const userPath = (user) => `/v1/users/${encodeURIComponent(user)}`;

/** A photo (or its thumbnail) as a blob: URL, fetched with the key. Revoke it when done. */
export async function photoURL(user, conceptId, imageId, size) {
  const query = size ? `?size=${size}` : "";
  const path = `${userPath(user)}/concepts/${conceptId}/images/${imageId}${query}`;
  const response = await call(path, { cache: "default" });
  return URL.createObjectURL(await response.blob());
}

/** Save a response's body as a file (the export), without putting the key in a URL. */
export async function download(path, fallbackName) {
  const response = await call(path);
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] || fallbackName;
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Server-sent events of a POST: calls onEvent(name, data) for each event. */
export async function streamEvents(path, json, onEvent, signal) {
  const response = await call(path, { method: "POST", json, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

/** A file's content as a data URL (what the JSON endpoints take as a photo). */
export function dataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
