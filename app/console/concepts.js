// Concepts: one user's gallery; create by dropping photos, edit, add and remove photos, delete.
import { call, getJSON, photoURL, userPath } from "./api.js";
import { confirmAction, dropZone, fill, h, toast } from "./dom.js";

const THUMB = 256;

/** Blob URLs made for one rendering, revoked together when the screen changes. */
class Photos {
  constructor() {
    this.urls = [];
    // Fetched when about to be seen: a user with hundreds of concepts costs a few
    // requests at a time, within the app's rate limit.
    this.pending = new Map();
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        this.observer.unobserve(entry.target);
        this.pending.get(entry.target)?.();
        this.pending.delete(entry.target);
      }
    }, { rootMargin: "300px" });
  }

  track(url) {
    this.urls.push(url);
    return url;
  }

  /** An <img> that shows the photo once it has been fetched with the key. */
  img(user, conceptId, imageId, alt, size = THUMB) {
    const image = h("img", { alt, class: "loading", decoding: "async" });
    this.pending.set(image, () => photoURL(user, conceptId, imageId, size).then((url) => {
      image.src = this.track(url);
      image.classList.remove("loading");
    }, () => image.classList.add("broken")));
    this.observer.observe(image);
    return image;
  }

  local(file) {
    return this.track(URL.createObjectURL(file));
  }

  revoke() {
    this.urls.forEach((url) => URL.revokeObjectURL(url));
    this.urls = [];
    this.pending.forEach((_, image) => this.observer.unobserve(image));
    this.pending.clear();
  }
}

export function render(screen, context) {
  const photos = new Photos();
  const userInput = h("input", { id: "concept-user", value: context.user, placeholder: "user id",
    "aria-label": "User id", autocomplete: "off", required: true });
  const gallery = h("div", { class: "gallery", id: "gallery" });
  const creator = h("div", { class: "card creator" });
  const status = h("p", { class: "muted" });
  const historyList = h("ol", { class: "history", id: "history" });

  const current = () => userInput.value.trim();

  let loading = 0; // only the latest load fills the gallery

  async function load() {
    const mine = ++loading;
    const user = current();
    context.user = user;
    if (!user) {
      gallery.replaceChildren();
      fill(status, "Type a user id to see their concepts, or to create their first one.");
      return;
    }
    const items = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ limit: 200, include: "looks_like" });
      if (cursor) query.set("cursor", cursor);
      const page = await getJSON(`${userPath(user)}/concepts?${query}`);
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    if (mine !== loading) return;
    photos.revoke();
    gallery.replaceChildren(...items.map((concept) => card(user, concept)));
    await loadHistory(user);
    fill(status, items.length ? `${items.length} concept${items.length === 1 ? "" : "s"} of ${user}` :
      `${user} has no concepts yet: drop photos above to create one.`);
  }

  // What changed in the user's concepts, newest first; a change made by chat can be undone.
  async function loadHistory(user) {
    const page = await getJSON(`${userPath(user)}/history?limit=50`);
    if (user !== current()) return;
    const what = (event) => (event.after || event.before || {}).name || "a concept";
    fill(historyList, page.items.length ? page.items.map((event) =>
      h("li", { class: `event ${event.source}`, dataset: { id: event.id } },
        h("time", { datetime: event.time }, new Date(event.time).toLocaleString()),
        h("span", { class: "chip" }, event.source),
        h("span", { class: "summary" }, ` ${event.action} ${what(event)}`,
          event.action === "updated" && event.before && event.after ?
            changeNote(event.before, event.after) : ""),
        event.undone_at && h("span", { class: "muted" }, " (undone)"),
        event.undoable && h("button", { type: "button", class: "ghost undo",
          onclick: async () => {
            await call(`${userPath(user)}/history/${event.id}/undo`, { method: "POST" });
            toast(`Undone: ${event.action} ${what(event)}.`);
            await load();
          } }, "Undo"))) :
      [h("li", { class: "muted" }, "No changes yet.")]);
  }

  function changeNote(before, after) {
    const notes = [];
    if (before.name !== after.name) notes.push(`renamed ${before.name} → ${after.name}`);
    if (before.description !== after.description) notes.push(`description “${after.description}”`);
    if (before.category !== after.category) notes.push(`category ${after.category || "none"}`);
    const photos = after.photos.length - before.photos.length;
    if (photos) notes.push(`${photos > 0 ? "+" : ""}${photos} photo${Math.abs(photos) === 1 ? "" : "s"}`);
    return notes.length ? `: ${notes.join(", ")}` : "";
  }

  function card(user, concept) {
    const first = concept.images[0];
    const warning = concept.looks_like &&
      h("p", { class: "warning", title: "Photos of either may be retrieved as the other: " +
        "add a distinguishing photo or description." },
        "⚠ looks like ", h("strong", {}, concept.looks_like.name), `, ${concept.looks_like.score.toFixed(2)}`);
    return h("article", { class: "concept", dataset: { id: concept.id }, tabindex: 0,
      onclick: () => edit(user, concept),
      onkeydown: (event) => event.key === "Enter" && edit(user, concept) },
      h("div", { class: "thumb" }, first && photos.img(user, concept.id, first.id, concept.name),
        h("span", { class: "count" }, concept.images.length ?
          `${concept.images.length} photo${concept.images.length === 1 ? "" : "s"}` :
          "text only: found when named")),
      h("div", { class: "body" },
        h("h3", { class: "name" }, concept.name),
        concept.category && h("span", { class: "chip" }, concept.category),
        h("p", { class: "description" }, concept.description || "No description."),
        warning));
  }

  function startCreating(files) {
    if (!current()) {
      toast("Type the user id first: concepts belong to one user.", "error");
      userInput.focus();
      return;
    }
    const chosen = [...files];
    const previews = h("div", { class: "strip" });
    const showPreviews = () => fill(previews, chosen.map((file) =>
      h("img", { src: photos.local(file), alt: file.name })));
    showPreviews();
    const name = h("input", { name: "name", required: true, maxlength: 100, placeholder: "<bo>" });
    const description = h("textarea", { name: "description", maxlength: 4000, rows: 2,
      placeholder: "a corgi who loves the beach" });
    const category = h("input", { name: "category", maxlength: 50, placeholder: "dog" });
    const submit = h("button", { type: "submit", class: "primary" }, "Create concept");
    const form = h("form", { class: "new-concept", onsubmit: async (event) => {
      event.preventDefault();
      submit.disabled = true;
      try {
        const body = new FormData();
        body.set("name", name.value);
        body.set("description", description.value);
        if (category.value.trim()) body.set("category", category.value.trim());
        chosen.forEach((file) => body.append("images", file, file.name));
        const created = await (await call(`${userPath(current())}/concepts`,
          { method: "POST", form: body })).json();
        toast(`Created ${created.name} with ${created.images.length} photo(s).`);
        resetCreator();
        await load();
      } catch (error) {
        toast(error.message, "error");
      } finally {
        submit.disabled = false;
      }
    } },
    h("h2", {}, `New concept for ${current()}`),
    previews,
    h("div", { class: "fields" },
      h("label", {}, "Name", name),
      h("label", {}, "Category", category),
      h("label", { class: "span" }, "Description", description)),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "ghost", onclick: resetCreator }, "Cancel"),
      dropZone("Add more photos", (more) => {
        chosen.push(...more);
        showPreviews();
      }),
      submit));
    fill(creator, form);
    name.focus();
  }

  function resetCreator() {
    fill(creator, dropZone("Drop photos of a new concept here", startCreating),
      h("button", { type: "button", class: "ghost", id: "text-only-concept",
        onclick: () => startCreating([]) }, "…or create one without photos"));
  }

  function edit(user, concept) {
    const dialog = h("dialog", { class: "editor" });
    const close = () => {
      dialog.close();
      dialog.remove();
    };
    const name = h("input", { name: "name", value: concept.name, maxlength: 100, required: true });
    const description = h("textarea", { name: "description", rows: 3, maxlength: 4000 });
    description.value = concept.description;
    const category = h("input", { name: "category", value: concept.category || "", maxlength: 50 });
    const path = `${userPath(user)}/concepts/${concept.id}`;
    const strip = h("div", { class: "strip editable" }, concept.images.map((image) =>
      h("figure", {}, photos.img(user, concept.id, image.id, `${concept.name}, ${image.width}×${image.height}`),
        h("button", { type: "button", class: "icon remove",
          "aria-label": "Remove photo",
          title: concept.images.length === 1 ?
            "Remove the last photo: the concept stays, found when named" : "Remove this photo",
          onclick: async () => {
            await call(`${path}/images/${image.id}`, { method: "DELETE" });
            toast("Photo removed.");
            close();
            await load();
          } }, "×"))));
    const addPhotos = dropZone("Add photos", async (files) => {
      const body = new FormData();
      files.forEach((file) => body.append("images", file, file.name));
      await call(`${path}/images`, { method: "POST", form: body });
      toast(`Added ${files.length} photo(s) to ${concept.name}.`);
      close();
      await load();
    });
    fill(dialog,
      h("form", { method: "dialog", onsubmit: async (event) => {
        event.preventDefault();
        try {
          await call(path, { method: "PATCH", json: {
            name: name.value, description: description.value, category: category.value } });
          toast("Saved.");
          close();
          await load();
        } catch (error) {
          toast(error.message, "error");
        }
      } },
      h("header", {}, h("h2", {}, "Edit concept"),
        h("button", { type: "button", class: "icon", "aria-label": "Close", onclick: close }, "×")),
      concept.looks_like && h("p", { class: "warning" }, "⚠ Its photos look like ",
        h("strong", {}, concept.looks_like.name), ` (${concept.looks_like.score.toFixed(2)}). ` +
        "Add a photo or a description that tells them apart."),
      strip, addPhotos,
      h("div", { class: "fields" },
        h("label", {}, "Name", name),
        h("label", {}, "Category", category),
        h("label", { class: "span" }, "Description", description)),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "danger", onclick: async () => {
          if (!(await confirmAction(`Delete ${concept.name}?`,
            "Its photos and vectors are deleted too.", "Delete concept"))) return;
          await call(path, { method: "DELETE" });
          toast(`Deleted ${concept.name}.`);
          close();
          await load();
        } }, "Delete concept"),
        h("span", { class: "grow" }),
        h("button", { type: "button", class: "ghost", onclick: close }, "Cancel"),
        h("button", { type: "submit", class: "primary" }, "Save"))));
    document.body.append(dialog);
    dialog.showModal();
  }

  fill(screen,
    h("div", { class: "screen-head" },
      h("div", {}, h("h1", {}, "Concepts"),
        h("p", { class: "muted" }, "A user's own concepts: the photos, name and description " +
          "that go into the prompt when rapport finds them.")),
      h("form", { class: "inline", onsubmit: (event) => {
        event.preventDefault();
        load();
      } }, userInput, h("button", { type: "submit" }, "Show"))),
    creator, status, gallery,
    h("section", { class: "card" }, h("h2", {}, "History"),
      h("p", { class: "muted" }, "Every change to these concepts, newest first: by the API, " +
        "an import or a chat. A change made by chat can be undone."), historyList));
  resetCreator();
  load();
  return () => photos.revoke();
}
