// Shared helpers of the s4al pages: the bearer token, API calls, and safe DOM building.
// Everything that comes from the server is put in the page as text (textContent), never as HTML.

const TOKEN_KEY = "s4al.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

export function getToken() {
  // A link may carry the token in its fragment (`#token=...`, as `s4al demo` prints it; a fragment is never
  // sent to a server): keep it, and take it out of the address bar.
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  localStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  localStorage.removeItem(TOKEN_KEY);
}

/** fetch() with the bearer token. Returns the Response; throws ApiError for 4xx/5xx. */
export async function apiFetch(path, { method = "GET", json, body, headers = {}, keepalive = false } = {}) {
  const h = { ...headers };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    h["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const res = await fetch(path, { method, headers: h, body, keepalive });
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const data = await res.json();
      detail = data.detail ?? detail;
    } catch {
      /* not JSON */
    }
    if (res.status === 401) clearToken();
    throw new ApiError(res.status, detail);
  }
  return res;
}

/** JSON of a successful call, or null for 204. */
export async function api(path, options) {
  const res = await apiFetch(path, options);
  return res.status === 204 ? null : res.json();
}

/** Build an element: el("a", {href: "/x", class: "c"}, "text", childNode). Strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** Show the token form in `root` until a token that /api/me accepts is entered; resolves with /api/me. */
export async function requireToken(root) {
  if (getToken()) {
    try {
      return await api("/api/me");
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
    }
  }
  return new Promise((resolve) => {
    const input = el("input", { type: "password", id: "token-input", autocomplete: "off",
                                placeholder: "s4al_…", size: 50 });
    const message = el("p", { class: "error", role: "alert" });
    const form = el("form", { id: "token-form", class: "token-form" },
      el("h2", {}, "Enter your s4al token"),
      el("p", {}, "Ask your admin for a token. It is kept in this browser (localStorage) until it stops working."),
      input, el("button", { type: "submit" }, "Continue"), message);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      setToken(input.value.trim());
      try {
        const me = await api("/api/me");
        form.remove();
        resolve(me);
      } catch (err) {
        message.textContent = err.status === 401 ? "That token is not valid." : `Error: ${err.message}`;
      }
    });
    root.append(form);
    input.focus();
  });
}

/** An image from the API (sent with the token) as an ImageBitmap. */
export async function fetchBitmap(path) {
  const res = await apiFetch(path);
  return createImageBitmap(await res.blob());
}

export function formatSeconds(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h ${String(m).padStart(2, "0")}m` : m ? `${m}m ${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

export function formatPercent(x, digits = 1) {
  return x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)}%`;
}
