// Users: the app's end users with their counts; open, export or erase one.
import { download, getJSON, call, userPath } from "./api.js";
import { bytes, confirmAction, fill, h, toast, when } from "./dom.js";

const PAGE = 50;

export function render(screen, context) {
  const search = h("input", { type: "search", id: "user-search", placeholder: "Find a user by id…",
    "aria-label": "Find a user by id", autocomplete: "off" });
  const body = h("tbody");
  const more = h("button", { class: "ghost", hidden: true }, "Load more");
  const summary = h("p", { class: "muted" });
  let cursor = null;
  let shown = 0;

  async function load(reset) {
    if (reset) {
      cursor = null;
      shown = 0;
      body.replaceChildren();
    }
    const params = new URLSearchParams({ limit: PAGE });
    if (cursor) params.set("cursor", cursor);
    if (search.value.trim()) params.set("prefix", search.value.trim());
    const page = await getJSON(`/v1/users?${params}`);
    for (const user of page.items) body.append(row(user));
    shown += page.items.length;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    fill(summary, shown ? `${shown}${cursor ? "+" : ""} user${shown === 1 ? "" : "s"}` :
      search.value.trim() ? "No user with an id starting with that." :
        "No users yet: create a concept for a user id on the Concepts screen.");
  }

  function row(user) {
    const open = () => {
      context.user = user.user_id;
      context.go("concepts");
    };
    const tr = h("tr", { dataset: { user: user.user_id } },
      h("td", { class: "id" }, h("a", { href: "#concepts", onclick: (event) => {
        event.preventDefault();
        open();
      } }, user.user_id)),
      h("td", { class: "num", "data-label": "Concepts" }, user.concepts),
      h("td", { class: "num", "data-label": "Photos" }, user.photos),
      h("td", { class: "num", "data-label": "Storage" }, bytes(user.bytes)),
      h("td", { "data-label": "Changed", title: new Date(user.changed_at).toLocaleString() },
        when(user.changed_at)),
      h("td", { class: "row-actions" },
        h("button", { class: "ghost", onclick: open }, "Open"),
        h("button", { class: "ghost", onclick: () => exportUser(user.user_id) }, "Export"),
        h("button", { class: "ghost danger", onclick: () => erase(user, tr) }, "Erase")));
    return tr;
  }

  async function exportUser(id) {
    await download(`${userPath(id)}/export`, `${id}-rapport-export.zip`);
    toast(`Exported ${id}: a zip that \`rapport import\` reads.`);
  }

  async function erase(user, tr) {
    const sure = await confirmAction(`Erase ${user.user_id}?`,
      `This deletes ${user.concepts} concept(s) and ${user.photos} photo(s) of this user, ` +
      "with their vectors and files. It cannot be undone.", "Erase user");
    if (!sure) return;
    await call(userPath(user.user_id), { method: "DELETE" });
    tr.remove();
    if (context.user === user.user_id) context.user = "";
    toast(`${user.user_id} was erased.`);
  }

  let timer;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => load(true), 250);
  });
  more.addEventListener("click", () => load(false));

  fill(screen,
    h("div", { class: "screen-head" },
      h("div", {}, h("h1", {}, "Users"),
        h("p", { class: "muted" }, "The end users of this app, with what each of them stores.")),
      search),
    h("div", { class: "card table-card" },
      h("table", { class: "users" },
        h("thead", {}, h("tr", {}, ["User id", "Concepts", "Photos", "Storage", "Last change", ""]
          .map((title) => h("th", {}, title)))),
        body),
      summary, more));
  load(true);
}
