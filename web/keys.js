// One keyboard rule for choosing a class, the same on every page: a class's key is its position in the
// palette. Positions 1–9 and 10 are the keys 1–9 and 0; positions 11–20 are Shift with the same digits;
// any class, however many there are, is reachable by name: "/" then the first letters, Enter picks.

export const BANK = 10;
const DIGITS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];

/** The label of the key of the class at palette `index` (0-based): "1", "0", "⇧3", or "" past 20. */
export function classKeyLabel(index) {
  if (index < BANK) return DIGITS[index];
  if (index < 2 * BANK) return `⇧${DIGITS[index - BANK]}`;
  return "";
}

/** The palette index a key event chooses, or -1. Uses `code` so that Shift+1 is not read as "!". */
export function classIndexOfKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return -1;
  const m = /^(?:Digit|Numpad)([0-9])$/.exec(event.code || "");
  const digit = m ? m[1] : /^[0-9]$/.test(event.key) ? event.key : null;
  if (digit === null) return -1;
  return DIGITS.indexOf(digit) + (event.shiftKey ? BANK : 0);
}

/** Classes whose name starts with `prefix` (case-insensitive), then those that contain it. */
export function matchClasses(classes, prefix) {
  const p = prefix.trim().toLowerCase();
  if (!p) return [];
  const starts = classes.filter((c) => c.name.toLowerCase().startsWith(p));
  const contains = classes.filter((c) => !starts.includes(c) && c.name.toLowerCase().includes(p));
  return [...starts, ...contains];
}

/**
 * Type-ahead by class name: `/` opens a small search box in `host`; typing narrows, Enter or Tab picks
 * the first match (`onPick(cls)`), Esc cancels. `handle(event)` returns true when it took the key.
 */
export class ClassFinder {
  constructor(host, classes, onPick) {
    this.classes = classes;
    this.onPick = onPick;
    this.box = document.createElement("div");
    this.box.className = "class-finder";
    this.box.hidden = true;
    this.input = document.createElement("input");
    this.input.type = "search";
    this.input.id = "class-finder-input";
    this.input.placeholder = "class name…";
    this.input.setAttribute("aria-label", "choose a class by name");
    this.hint = document.createElement("span");
    this.hint.className = "small";
    this.box.append(this.input, this.hint);
    host.append(this.box);
    this.input.addEventListener("input", () => this._update());
    this.input.addEventListener("keydown", (e) => {
      e.stopPropagation(); // the page's own shortcuts stay off while a name is typed
      if (e.key === "Escape") { e.preventDefault(); this.close(); }
      else if (e.key === "Enter" || e.key === "Tab") {
        e.preventDefault();
        const [first] = matchClasses(this.classes, this.input.value);
        this.close();
        if (first) this.onPick(first);
      }
    });
    this.input.addEventListener("blur", () => this.close());
  }

  get open() {
    return !this.box.hidden;
  }

  handle(event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return false;
    event.preventDefault();
    this.box.hidden = false;
    this.input.value = "";
    this._update();
    this.input.focus();
    return true;
  }

  close() {
    if (this.box.hidden) return;
    this.box.hidden = true;
    this.input.blur();
  }

  _update() {
    const found = matchClasses(this.classes, this.input.value);
    this.hint.textContent = this.input.value ? (found.length ? `→ ${found[0].name}` : "no class") : "type a name";
  }
}
