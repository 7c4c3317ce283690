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
      const next = document.importNode(fresh, true);
      localize(next);
      current.replaceWith(next);
      if (fresh.dataset.live) setTimeout(tick, every);
    } catch (e) {
      setTimeout(tick, every * 2);
    }
  }, every);
}

// Times: the page says "3 min ago" with UTC on hover; add the viewer's own clock.
function localize(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const local = new Date(t.dateTime).toLocaleString();
    if (!t.title.includes(" / ")) t.title = t.title + " / " + local + " here";
  }
}

document.addEventListener("DOMContentLoaded", function () {
  localize(document);
  const live = document.getElementById("live");
  if (live && live.dataset.live) follow(live);
});
