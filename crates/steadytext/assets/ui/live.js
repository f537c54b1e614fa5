// Live status on a request's page: polls its status every 500 ms while it can still change and
// writes it into the page. The page works without this script (reload to see a change).
(function () {
  "use strict";
  var el = document.getElementById("status");
  if (!el || !el.dataset.live) { return; }
  var finished = { completed: true, failed: true, cancelled: true };
  function poll() {
    if (finished[el.dataset.status]) { return; }
    fetch(el.dataset.live, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (body && body.status && body.status !== el.dataset.status) {
          el.dataset.status = body.status;
          el.textContent = body.status;
          if (finished[body.status]) { window.location.reload(); return; }
        }
        window.setTimeout(poll, 500);
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 500);
})();
