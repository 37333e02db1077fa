// Portcullis admin page: keeps the pending approvals current without a reload. The fragment
// comes from this origin, rendered and escaped by the server.
"use strict";
(function () {
  const box = document.getElementById("pending");
  if (!box) return;
  const url = box.dataset.live;
  let last = box.innerHTML;
  async function refresh() {
    try {
      // Do not replace the table under someone typing a reason.
      if (box.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
      const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { window.location = "/login"; return; }
      if (!r.ok) return;
      const text = await r.text();
      const doc = new DOMParser().parseFromString(text, "text/html");
      const fresh = doc.getElementById("pending");
      if (fresh && fresh.innerHTML !== last) {
        box.innerHTML = fresh.innerHTML;
        last = fresh.innerHTML;
      }
    } catch (e) { /* the gateway restarting: try again next tick */ }
  }
  setInterval(refresh, 1000);
})();
