// Building the page. User data only ever goes into text nodes and attributes, never
// into HTML: no module of the console parses strings as HTML.

/** An element: h("button", {class: "primary", onclick: fn}, "Save", child, ...). */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  // A button submits its form only when it says so.
  if (tag === "button") node.type = "button";
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's content. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** A short, readable byte count. */
export function bytes(count) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = count;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit && value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** "3 min ago", "2 days ago", or the date. */
export function when(iso) {
  const date = new Date(iso);
  const seconds = (Date.now() - date.getTime()) / 1000;
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  if (seconds < 86400 * 30) return `${Math.floor(seconds / 86400)} days ago`;
  return date.toLocaleDateString();
}

/** A message at the top of the page; errors stay until closed, others fade. */
export function toast(message, kind = "info") {
  const area = $("#toasts");
  const close = h("button", { class: "icon", "aria-label": "Close", onclick: () => item.remove() }, "×");
  const item = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, message), close);
  area.append(item);
  while (area.childElementCount > 3) area.firstElementChild.remove();
  if (kind !== "error") setTimeout(() => item.remove(), 3500);
  return item;
}

/** Ask before something that cannot be undone; resolves true when confirmed. */
export function confirmAction(title, text, action = "Delete") {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm" });
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    fill(dialog,
      h("h3", {}, title),
      h("p", {}, text),
      h("div", { class: "actions" },
        h("button", { onclick: () => done(false) }, "Cancel"),
        h("button", { class: "danger", onclick: () => done(true) }, action)));
    dialog.addEventListener("cancel", () => done(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Files dropped on, or chosen in, a drop zone; calls onFiles with the image files. */
export function dropZone(label, onFiles, { multiple = true } = {}) {
  const input = h("input", { type: "file", accept: "image/*", multiple, class: "visually-hidden" });
  const zone = h("label", { class: "drop" }, h("span", { class: "drop-icon", "aria-hidden": "true" }, "⬆"),
    h("span", {}, label), h("small", {}, "or click to choose"), input);
  const take = (list) => {
    const files = [...list].filter((file) => file.type.startsWith("image/"));
    if (files.length) onFiles(files);
  };
  input.addEventListener("change", () => {
    take(input.files);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    take(event.dataTransfer.files);
  });
  return zone;
}
