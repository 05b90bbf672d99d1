// The page's outbox: a submitted mask is written to IndexedDB first, then sent with its Idempotency-Key,
// retried with backoff until the server answers for good. It survives a reload and a browser restart
// (the items wait in IndexedDB until they are sent). A permanent refusal (4xx other than 401/408/429)
// keeps the item, marked refused, so the mask is never discarded silently. A 401 waits for `onAuth`
// (a new token) and then sends again.

import { ApiError } from "./common.js";

const DB_NAME = "s4al-outbox";
const STORE = "items";
const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 8000;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function openDb() {
  const req = indexedDB.open(DB_NAME, 1);
  req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "key" });
  return request(req);
}

/** Run `fn(store)` in one transaction; resolves with its request's result once the transaction is durable. */
function inStore(db, mode, fn) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode, { durability: "strict" });
    const req = fn(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

function permanent(err) {
  return err instanceof ApiError && err.status < 500 && ![401, 408, 429].includes(err.status);
}

export class Outbox {
  /**
   * send(item) → Promise: POSTs one item, throws ApiError (answered) or anything else (network).
   * onChange(outbox): called whenever the visible state changes. onAuth() → Promise: a new token.
   */
  constructor({ scope, send, onChange = () => {}, onAuth }) {
    Object.assign(this, { scope, send, onChange, onAuth });
    this.items = [];
    this.offline = false;
    this.sending = false;
    this.waitingAuth = false;
    this.listeners = new Set();
    this.wake = null;
    window.addEventListener("online", () => this.kick());
  }

  async open() {
    this.db = await openDb();
    const all = await inStore(this.db, "readonly", (s) => s.getAll());
    this.items = all.filter((i) => i.scope === this.scope).sort((a, b) => a.createdAt - b.createdAt);
    this._changed();
    this.kick();
  }

  /** Keep `item` ({key, leaseId, png: ArrayBuffer, ...}) durably, then send it in turn. */
  async add(item) {
    Object.assign(item, { scope: this.scope, state: "waiting", createdAt: Date.now(), error: null });
    await inStore(this.db, "readwrite", (s) => s.put(item));
    this.items.push(item);
    this._changed();
    this.kick();
  }

  waiting() { return this.items.filter((i) => i.state === "waiting"); }
  refused() { return this.items.filter((i) => i.state === "refused"); }
  /** Lease ids still owed a submission: the page must not be handed these regions again (a revision
   * of a recent submission holds no lease). */
  leaseIds() { return this.waiting().map((i) => i.leaseId).filter(Boolean); }

  /** Resolves at the next change of the outbox (an item sent, refused or added), or after `ms`. */
  nextChange(ms = 5000) {
    return new Promise((resolve) => {
      const done = () => { this.listeners.delete(done); clearTimeout(timer); resolve(); };
      const timer = setTimeout(done, ms);
      this.listeners.add(done);
    });
  }

  kick() {
    if (this.wake) this.wake();
    else if (!this.sending) this._run();
  }

  async _run() {
    this.sending = true;
    let delay = FIRST_DELAY_MS;
    for (let item = this.waiting()[0]; item; item = this.waiting()[0]) {
      this._changed();
      try {
        const result = await this.send(item);
        await this._forget(item);
        this.offline = false;
        delay = FIRST_DELAY_MS;
        item.result = result;
        this.onDelivered?.(item);
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) {
          this.waitingAuth = true;
          this._changed();
          await this.onAuth();
          this.waitingAuth = false;
        } else if (permanent(err)) {
          item.state = "refused";
          item.error = `${err.status}: ${err.message}`;
          await inStore(this.db, "readwrite", (s) => s.put(item));
          this.onRefused?.(item);
        } else {
          this.offline = !(err instanceof ApiError);
          this._changed();
          await this._sleep(delay);
          delay = Math.min(MAX_DELAY_MS, delay * 2);
        }
      }
    }
    this.sending = false;
    this._changed();
  }

  async _forget(item) {
    await inStore(this.db, "readwrite", (s) => s.delete(item.key));
    this.items = this.items.filter((i) => i !== item);
  }

  /** Wait `ms`, or less if kick() (a new item, the browser back online) comes first. */
  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.wake = null; resolve(); }, ms);
      this.wake = () => { clearTimeout(timer); this.wake = null; resolve(); };
    });
  }

  /** "saved" | "saving" | "offline" | "auth": what the page shows beside the count of waiting items. */
  status() {
    if (this.waitingAuth) return "auth";
    if (!this.waiting().length) return "saved";
    return this.offline ? "offline" : "saving";
  }

  _changed() {
    this.onChange(this);
    for (const listener of [...this.listeners]) listener();
  }
}
