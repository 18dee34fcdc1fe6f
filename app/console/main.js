// The console's entry point: sign-in, the tabs, and which screen shows.
import { ApiError, call, session } from "./api.js";
import { $, fill, h, toast } from "./dom.js";
import * as admin from "./admin.js";
import * as concepts from "./concepts.js";
import * as playground from "./playground.js";
import * as users from "./users.js";

const TENANT_TABS = [
  ["users", "Users", users],
  ["concepts", "Concepts", concepts],
  ["playground", "Playground", playground],
];
const ADMIN_TABS = [["tenants", "Tenants & keys", admin]];
const USER = "rapport.user";

let leave = null; // the shown screen's clean-up (revokes its blob URLs)

const context = {
  role: null,
  get user() {
    return sessionStorage.getItem(USER) || "";
  },
  set user(value) {
    sessionStorage.setItem(USER, value);
  },
  go,
};

const PROBES = {
  tenant: "/v1/users?limit=1",
  admin: "/v1/admin/tenants",
};
const ROLE = "rapport.role";

/** Which kind of key this is: "tenant" or "admin" (the kind it was last time tried
 * first, so that a reload costs no failed authentication), or an ApiError saying why
 * neither. */
async function roleOf(key) {
  const last = sessionStorage.getItem(ROLE);
  const order = last === "admin" ? ["admin", "tenant"] : ["tenant", "admin"];
  for (const role of order) {
    try {
      await call(PROBES[role], { key });
      return role;
    } catch (error) {
      // 401: not this kind of key; 404: no admin API on this service.
      if (!(error instanceof ApiError) || ![401, 404].includes(error.status)) throw error;
    }
  }
  throw new ApiError(401, "This key was not accepted", "it is unknown, revoked or expired");
}

function tabs() {
  return context.role === "admin" ? ADMIN_TABS : TENANT_TABS;
}

function go(name) {
  const found = tabs().find(([id]) => id === name) || tabs()[0];
  if (location.hash !== `#${found[0]}`) history.replaceState(null, "", `#${found[0]}`);
  for (const link of document.querySelectorAll("#tabs a")) {
    link.setAttribute("aria-current", link.dataset.tab === found[0] ? "page" : "false");
  }
  const screen = $("#screen");
  leave?.();
  screen.replaceChildren();
  screen.dataset.screen = found[0];
  leave = found[2].render(screen, context) || null;
}

function showApp() {
  $("#signin").hidden = true;
  $("#app").hidden = false;
  const key = session.key;
  const label = context.role === "admin" ? "admin key" : `app key ${key.slice(0, 11)}…`;
  fill($("#who"), label);
  fill(
    $("#tabs"),
    tabs().map(([id, title]) =>
      h("a", { href: `#${id}`, dataset: { tab: id }, onclick: (event) => {
        event.preventDefault();
        go(id);
      } }, title),
    ),
  );
  go(location.hash.slice(1));
}

function showSignIn(message) {
  $("#app").hidden = true;
  $("#screen").replaceChildren();
  $("#signin").hidden = false;
  const error = $("#signin-error");
  error.hidden = !message;
  fill(error, message || "");
  $("#key").focus();
}

async function signIn(key) {
  const button = $("#signin-form button[type=submit]");
  button.disabled = true;
  try {
    context.role = await roleOf(key);
    session.key = key;
    sessionStorage.setItem(ROLE, context.role);
    $("#key").value = "";
    showApp();
  } catch (error) {
    session.key = null;
    showSignIn(error.message);
  } finally {
    button.disabled = false;
  }
}

function signOut() {
  session.key = null;
  sessionStorage.removeItem(USER);
  sessionStorage.removeItem(ROLE);
  context.role = null;
  history.replaceState(null, "", location.pathname);
  showSignIn();
}

/** A failed request of any screen is shown; one whose key is no longer accepted
 * (revoked, expired) signs out. */
window.addEventListener("unhandledrejection", (event) => {
  if (!(event.reason instanceof ApiError)) return;
  event.preventDefault();
  if (event.reason.status === 401) {
    session.key = null;
    leave?.();
    leave = null;
    showSignIn(event.reason.message);
  } else {
    toast(event.reason.message, "error");
  }
});

$("#signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("#key").value.trim();
  if (key) signIn(key);
});
$("#signout").addEventListener("click", signOut);

if (session.key) signIn(session.key);
else showSignIn();
