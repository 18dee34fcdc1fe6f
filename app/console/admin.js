// Tenants and keys (admin key): list tenants with what they store, create a tenant,
// create a key (shown once) and revoke keys.
import { call, getJSON } from "./api.js";
import { bytes, confirmAction, fill, h, toast, when } from "./dom.js";

const tenantPath = (name) => `/v1/admin/tenants/${encodeURIComponent(name)}`;

export function render(screen) {
  const list = h("tbody", { id: "tenants" });
  const detail = h("div", { class: "card", id: "tenant-detail" },
    h("p", { class: "muted" }, "Choose a tenant to see its keys."));
  const newName = h("input", { id: "new-tenant", placeholder: "my-app", maxlength: 200,
    required: true, "aria-label": "New tenant name" });

  async function load(select) {
    const tenants = await getJSON("/v1/admin/tenants");
    fill(list, tenants.map((tenant) => {
      const usage = h("td", { class: "num usage", "data-label": "Stores" }, "…");
      getJSON(`${tenantPath(tenant.name)}/usage`).then((u) => fill(usage,
        `${u.users} users · ${u.concepts} concepts · ${u.photos} photos · ${bytes(u.bytes)}`));
      return h("tr", { dataset: { tenant: tenant.name } },
        h("td", { class: "id" }, h("a", { href: "#tenants", onclick: (event) => {
          event.preventDefault();
          show(tenant.name);
        } }, tenant.name)),
        usage,
        h("td", { "data-label": "Created" }, when(tenant.created_at)),
        h("td", { class: "row-actions" }, h("button", { class: "ghost", onclick: () => show(tenant.name) }, "Keys")));
    }));
    if (!tenants.length) list.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No tenants yet.")));
    if (select) show(select);
  }

  async function show(name, created) {
    const keys = await getJSON(`${tenantPath(name)}/keys`);
    const rows = keys.map((key) => {
      const state = key.revoked_at ? "revoked" :
        key.expires_at && new Date(key.expires_at) < new Date() ? "expired" : "live";
      return h("tr", { dataset: { prefix: key.prefix } },
        h("td", { class: "id" }, h("code", {}, `rk_${key.prefix}_…`)),
        h("td", { "data-label": "State" }, h("span", { class: `chip ${state}` }, state)),
        h("td", { "data-label": "Created" }, when(key.created_at)),
        h("td", { "data-label": "Expires" }, key.expires_at ? new Date(key.expires_at).toLocaleDateString() : "never"),
        h("td", { class: "row-actions" }, state === "live" &&
          h("button", { class: "ghost danger", onclick: async () => {
            if (!(await confirmAction(`Revoke rk_${key.prefix}_…?`,
              "Apps using this key are refused within a second. This cannot be undone.", "Revoke key"))) return;
            await call(`${tenantPath(name)}/keys/${encodeURIComponent(key.prefix)}`, { method: "DELETE" });
            toast("Key revoked.");
            show(name);
          } }, "Revoke")));
    });
    const expiry = h("select", { "aria-label": "Expires" },
      [["", "never expires"], ["30", "expires in 30 days"], ["90", "expires in 90 days"], ["365", "expires in a year"]]
        .map(([value, label]) => h("option", { value }, label)));
    fill(detail,
      h("header", {}, h("h2", {}, `Keys of ${name}`)),
      created && h("div", { class: "once", id: "new-key", role: "status" },
        h("p", {}, h("strong", {}, "New key — copy it now, it is shown only once:")),
        h("div", { class: "copy" }, h("code", { id: "new-key-value" }, created),
          h("button", { class: "ghost", onclick: async (event) => {
            await navigator.clipboard.writeText(created);
            fill(event.target, "Copied");
          } }, "Copy"))),
      h("table", { class: "keys" },
        h("thead", {}, h("tr", {}, ["Key", "State", "Created", "Expires", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No keys.")))),
      h("div", { class: "actions" }, expiry,
        h("button", { class: "primary", id: "create-key", onclick: async () => {
          const days = Number(expiry.value);
          const json = days ? { expires_at: new Date(Date.now() + days * 86400000).toISOString() } : {};
          const made = await (await call(`${tenantPath(name)}/keys`, { method: "POST", json })).json();
          show(name, made.key);
        } }, "Create key")));
  }

  fill(screen,
    h("div", { class: "screen-head" },
      h("div", {}, h("h1", {}, "Tenants & keys"),
        h("p", { class: "muted" }, "Each tenant is an app; its keys reach its own users only. " +
          "The admin key itself never reads user data.")),
      h("form", { class: "inline", onsubmit: async (event) => {
        event.preventDefault();
        const name = newName.value.trim();
        await call("/v1/admin/tenants", { method: "POST", json: { name } });
        newName.value = "";
        toast(`Created tenant ${name}.`);
        load(name);
      } }, newName, h("button", { type: "submit", class: "primary" }, "Create tenant"))),
    h("div", { class: "admin" },
      h("div", { class: "card table-card" },
        h("table", { class: "tenants" },
          h("thead", {}, h("tr", {}, ["Tenant", "Stores", "Created", ""].map((t) => h("th", {}, t)))),
          list)),
      detail));
  load();
}
