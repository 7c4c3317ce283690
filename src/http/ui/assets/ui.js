// runbookd UI: the only script the pages load. Pages work without it; with it,
// an active run's page follows the run by reloading its live part.
"use strict";

function follow(live) {
  const every = Number(live.dataset.live) || 2000;
  setTimeout(async function tick() {
    try {
      const resp = await fetch(window.location.href, { credentials: "same-origin" });
      if (!resp.ok) return;
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      const fresh = doc.getElementById("live");
      if (!fresh) return;
      const current = document.getElementById("live");
      current.replaceWith(document.importNode(fresh, true));
      if (fresh.dataset.live) setTimeout(tick, every);
    } catch (e) {
      setTimeout(tick, every * 2);
    }
  }, every);
}

document.addEventListener("DOMContentLoaded", function () {
  const live = document.getElementById("live");
  if (live && live.dataset.live) follow(live);
});
