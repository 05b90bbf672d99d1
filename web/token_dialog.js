// Recovering from a 401 in place: a token form over the page (the region and its painting stay as they
// are); every caller that got a 401 waits on the same dialog and goes on once /api/me accepts a token.

import { api, el, setToken } from "./common.js";

let open = null; // Promise of /api/me while the dialog is shown

export function askForToken(reason = "Your token was not accepted (revoked or expired).") {
  if (open) return open;
  open = new Promise((resolve) => {
    const input = el("input", { type: "password", id: "token-input", autocomplete: "off", placeholder: "s4al_…",
                                size: 50 });
    const error = el("p", { class: "error", role: "alert" });
    const form = el("form", { class: "panel token-form", id: "renew-token-form" },
      el("h2", {}, "Enter a new token"),
      el("p", {}, reason, " Your painting and unsaved regions are kept; they are sent once a token works."),
      input, el("button", { type: "submit", class: "primary" }, "Continue"), error);
    const overlay = el("div", { class: "overlay", id: "token-dialog" }, form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      setToken(input.value.trim());
      try {
        const me = await api("/api/me");
        overlay.remove();
        open = null;
        resolve(me);
      } catch (err) {
        error.textContent = err.status === 401 ? "That token is not valid either." : `Error: ${err.message}`;
      }
    });
    document.body.append(overlay);
    input.focus();
  });
  return open;
}

export function tokenDialogOpen() {
  return open !== null;
}
