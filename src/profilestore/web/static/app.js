// profilestore: a little progressive enhancement. Every page works without it.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // The project switcher submits on change.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // "/" focuses the filter; Esc leaves a field or closes an open <details>.
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT");
    if (event.key === "/" && !typing) {
      var field = document.querySelector("[data-slash]");
      if (field) { event.preventDefault(); field.focus(); field.select(); }
    } else if (event.key === "Escape") {
      var open = document.querySelector("details[open]");
      if (typing) { target.blur(); } else if (open) { open.removeAttribute("open"); open.querySelector("summary").focus(); }
    }
  });

  // The count of matches arrives after the rows.
  document.querySelectorAll("a[data-count]").forEach(function (link) {
    link.textContent = "Counting…";
    fetch(link.href, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        if (typeof body.count === "number") {
          var span = document.createElement("span");
          span.className = "count-value";
          span.textContent = body.count.toLocaleString("en-US") + (body.count === 1 ? " match" : " matches");
          link.replaceWith(span);
        } else { link.textContent = "Count failed: " + (body.error || "unknown error"); }
      })
      .catch(function () { link.textContent = "Count matches"; });
  });

  // Edit Columns is remembered per project in this browser.
  var columns = document.querySelector("form[data-columns]");
  if (columns) {
    var project = document.getElementById("project-switch");
    var key = "profilestore.columns." + (project ? project.value : "");
    var params = new URLSearchParams(location.search);
    var saved = localStorage.getItem(key);
    if (!params.has("cols") && saved) {
      params.set("cols", saved);
      location.replace(location.pathname + "?" + params.toString());
    }
    columns.addEventListener("submit", function () {
      var value = columns.querySelector("input[name=cols]").value.trim();
      if (value) { localStorage.setItem(key, value); } else { localStorage.removeItem(key); }
    });
  }
})();
