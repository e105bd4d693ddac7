// profilestore: the import page follows its job without reloading (the page refreshes itself without this).
(function () {
  "use strict";
  var box = document.querySelector("[data-import-status]");
  var state = document.querySelector("[data-import-state]");
  if (!box || !state || (state.textContent !== "queued" && state.textContent !== "running")) { return; }
  var bar = box.querySelector("progress");
  var rows = box.querySelector("[data-import-rows]");
  function format(n) { return Number(n).toLocaleString("en-US"); }
  function poll() {
    fetch(box.getAttribute("data-import-status"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (job) {
        bar.value = job.percent;
        bar.textContent = job.percent + "%";
        rows.textContent = format(job.rows_done) + (job.rows_total ? " of " + format(job.rows_total) : "") + " rows" +
          (job.rows_per_second ? " · " + format(job.rows_per_second) + " rows/s" : "");
        if (job.state === "queued" || job.state === "running") { setTimeout(poll, 1000); }
        else { location.reload(); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 500);
})();
