
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("dupaudit-data").textContent);
  var form = document.getElementById("filters");
  var gallery = document.getElementById("gallery");
  var count = document.getElementById("count");
  var slider = document.getElementById("f-distance");
  var sliderValue = document.getElementById("f-distance-value");
  var page = 0, matching = [];
  // The data come in "findings first" order (label conflicts, then leaks, then the rest); `index` keeps it.
  var ORDERS = {
    "distance": function (a, b) { return a.distance - b.distance; },
    "distance-desc": function (a, b) { return b.distance - a.distance; },
    "size": function (a, b) { return b.members.length - a.members.length; }
  };
  var groups = D.groups.map(function (g, index) {
    var labels = {}, splits = {}, paths = [];
    g[4].forEach(function (m) {
      if (m[2] >= 0) labels[D.labels[m[2]]] = true;
      splits[D.roots[m[0]]] = true;
      paths.push((D.roots[m[0]] + "/" + m[1]).toLowerCase());
    });
    return {index: index, id: g[0], kind: g[1], distance: g[2], conflict: !!(g[3] & 1), leak: !!(g[3] & 2),
            members: g[4], labels: labels, splits: splits, text: paths.join("\n")};
  });

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function bytes(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
    if (n >= 1e3) return (n / 1e3).toFixed(1) + " KB";
    return n + " B";
  }
  function state() {
    var kinds = {};
    Array.prototype.forEach.call(form.querySelectorAll("input[name=kind]"), function (box) {
      kinds[box.value] = box.checked;
    });
    return {kinds: kinds, label: document.getElementById("f-label").value,
            split: document.getElementById("f-split").value,
            conflict: document.getElementById("f-conflict").checked,
            leak: document.getElementById("f-leak").checked,
            distance: Number(slider.value),
            text: document.getElementById("f-text").value.trim().toLowerCase(),
            order: document.getElementById("f-order").value};
  }
  var lastKey = null;
  function filter() {
    var s = state(), key = JSON.stringify(s);
    sliderValue.textContent = String(s.distance);
    if (key === lastKey) return false;  // browsers send both input and change for some controls
    lastKey = key;
    matching = groups.filter(function (g) {
      return s.kinds[g.kind] !== false && g.distance <= s.distance && (!s.conflict || g.conflict) &&
        (!s.leak || g.leak) && (!s.label || g.labels[s.label]) && (!s.split || g.splits[s.split]) &&
        (!s.text || g.text.indexOf(s.text) >= 0);
    });
    var by = ORDERS[s.order];
    if (by) matching.sort(function (a, b) { return by(a, b) || a.index - b.index; });
    return true;
  }
  function member(m) {
    var fig = el("figure", "member" + (m[3] ? " keep" : ""));
    var root = D.roots[m[0]], label = m[2] >= 0 ? D.labels[m[2]] : "(unlabelled)";
    if (m[7]) {
      var img = el("img", "thumb");
      img.alt = m[1];
      img.src = m[7];
      fig.appendChild(img);
    } else {
      var ph = el("div", "thumb placeholder", m[8] || "no preview");
      ph.title = m[8] || "no preview";
      fig.appendChild(ph);
    }
    var cap = el("figcaption");
    var link = m[9];  // [kind, the member it copies, distance, score]: this copy's own link
    var badge = el("span", "badge " + (m[3] ? "keep" : "copy"), m[3] ? "keep" : link ? link[0] + " copy" : "copy");
    if (link) badge.title = link[0] + " copy of " + link[1];
    cap.appendChild(badge);
    var path = el("div", "path", m[1]);
    path.title = root + "/" + m[1];
    cap.appendChild(path);
    cap.appendChild(el("div", "facts", label + " · " + root));
    var facts = (m[4] && m[5] ? m[4] + "×" + m[5] + " px" : "size unknown") + (m[6] ? " · " + bytes(m[6]) : "");
    cap.appendChild(el("div", "facts", facts));
    if (link) {
      var of = el("div", "facts link", "of " + link[1].split("/").pop() + " · d " + link[2] +
        (link[3] === null ? "" : " · score " + link[3].toFixed(2)));
      of.title = link[0] + " copy of " + link[1];
      cap.appendChild(of);
    }
    fig.appendChild(cap);
    return fig;
  }
  function card(g) {
    var art = el("article", "group" + (g.conflict ? " conflict" : "") + (g.leak ? " leak" : ""));
    art.setAttribute("data-group-id", String(g.id));
    art.setAttribute("data-distance", String(g.distance));
    art.setAttribute("data-kind", g.kind);
    var head = el("header");
    head.appendChild(el("span", "gid", "group " + g.id));
    var kind = el("span", "badge", g.kind);
    kind.style.background = D.kindColors[g.kind] || "#999999";
    head.appendChild(kind);
    head.appendChild(el("span", "dist", "distance " + g.distance));
    head.appendChild(el("span", "n", g.members.length + " images"));
    if (g.conflict) head.appendChild(el("span", "badge conflict", "label conflict: " +
                                         Object.keys(g.labels).sort().join(" / ")));
    if (g.leak) head.appendChild(el("span", "badge leak", "leak: " + Object.keys(g.splits).sort().join(" + ")));
    art.appendChild(head);
    var row = el("div", "members");
    // A chain of near duplicates can hold hundreds of images: show the first few, the rest on request.
    g.members.slice(0, D.membersShown).forEach(function (m) { row.appendChild(member(m)); });
    art.appendChild(row);
    if (g.members.length > D.membersShown) {
      var more = el("button", "more", "show all " + g.members.length + " images");
      more.type = "button";
      more.addEventListener("click", function () {
        g.members.slice(D.membersShown).forEach(function (m) { row.appendChild(member(m)); });
        more.remove();
      });
      art.appendChild(more);
    }
    return art;
  }
  function draw() {
    var pages = Math.max(1, Math.ceil(matching.length / D.pageSize));
    page = Math.min(Math.max(page, 0), pages - 1);
    var start = page * D.pageSize, shown = matching.slice(start, start + D.pageSize);
    var frag = document.createDocumentFragment();
    shown.forEach(function (g) { frag.appendChild(card(g)); });
    if (!shown.length) frag.appendChild(el("p", "note empty", "No group matches these filters."));
    gallery.replaceChildren(frag);
    count.setAttribute("data-matching", String(matching.length));
    count.setAttribute("data-page", String(page + 1));
    count.textContent = matching.length ? ("groups " + (start + 1).toLocaleString() + "–" +
      (start + shown.length).toLocaleString() + " of " + matching.length.toLocaleString() + " matching (" +
      groups.length.toLocaleString() + " in all)") : ("0 of " + groups.length.toLocaleString() + " groups match");
    Array.prototype.forEach.call(document.querySelectorAll(".page-label"), function (label) {
      label.textContent = "page " + (page + 1) + " of " + pages;
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-page]"), function (b) {
      var a = b.getAttribute("data-page");
      b.disabled = (a === "first" || a === "prev") ? page === 0 : page >= pages - 1;
    });
  }
  function update() { if (filter()) { page = 0; draw(); } }
  var timer = null;
  form.addEventListener("input", function (event) {
    if (event.target.id === "f-text") {
      clearTimeout(timer);
      timer = setTimeout(update, 150);
    } else {
      update();
    }
  });
  form.addEventListener("change", function (event) { if (event.target.id !== "f-text") update(); });
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  form.addEventListener("reset", function () { setTimeout(update, 0); });
  Array.prototype.forEach.call(document.querySelectorAll("[data-page]"), function (b) {
    b.addEventListener("click", function () {
      var a = b.getAttribute("data-page");
      page = a === "first" ? 0 : a === "prev" ? page - 1 : a === "next" ? page + 1 : 1e9;
      draw();
      if (b.closest(".bottom")) document.getElementById("groups").scrollIntoView();
    });
  });
  update();
  document.documentElement.setAttribute("data-ready", "1");
})();
