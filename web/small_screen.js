// Painting needs room: on a phone the crop would be a few hundred pixels wide with the tools below it,
// too small to paint a region accurately with a finger. There the page says so and points to the
// tagging page, which works on a phone, instead of leasing regions it cannot serve well. A tablet
// (768×1024 and up, either way round) paints as a computer does.

import { clear, el } from "./common.js";

const PHONE = "(max-width: 599px), (max-height: 479px)";

/** Whether this screen is too small to paint on. */
export function isPhoneScreen() {
  return window.matchMedia(PHONE).matches;
}

/** Say in `box` that painting needs a larger screen, with a link to the tagging page of `projectRef`;
 * resolves once the screen is large enough (a window widened, a device rotated to a larger side). */
export function waitForRoom(box, projectRef) {
  const query = window.matchMedia(PHONE);
  if (!query.matches) return Promise.resolve();
  clear(box).append(
    el("h2", {}, "Painting is not supported on phones"),
    el("p", {}, "Labeling regions needs a larger screen: open this page on a tablet or a computer."),
    el("p", {}, "Tagging images (choosing which classes an image contains) works on this phone: ",
       el("a", { id: "tag-instead", href: `/tag/${encodeURIComponent(projectRef)}` }, "tag images instead"), "."));
  box.hidden = false;
  return new Promise((resolve) => {
    const changed = () => {
      if (query.matches) return;
      query.removeEventListener("change", changed);
      box.hidden = true;
      resolve();
    };
    query.addEventListener("change", changed);
  });
}
