// forge-sync gallery: infinite scroll, live rows, copy buttons, keyboard navigation.
// Values are only ever set with textContent / setAttribute: never parsed as HTML.
"use strict";

function makeCard(item) {
  const link = document.createElement("a");
  link.className = "card";
  link.href = "/item/" + Number(item.id);
  link.dataset.id = String(Number(item.id));
  const img = document.createElement("img");
  img.loading = "lazy";
  img.src = item.thumb || thumbUrl(item);
  const caption = String(item.prompt || item.path || "").slice(0, 160);
  img.alt = caption;
  const cap = document.createElement("bdi");
  cap.className = "cap";
  cap.textContent = caption;
  link.append(img, cap);
  return link;
}

function thumbUrl(item) {
  if (typeof item.sha256 === "string" && /^[0-9a-f]{64}$/.test(item.sha256)) {
    return "/thumb/" + item.sha256 + ".webp";
  }
  return "/thumb/item/" + Number(item.id) + ".webp";
}

function infiniteScroll(grid) {
  const more = document.getElementById("more");
  if (!more || !("IntersectionObserver" in window)) return;
  let loading = false;
  const observer = new IntersectionObserver(async (entries) => {
    if (!entries.some((e) => e.isIntersecting) || loading || !grid.dataset.next) return;
    loading = true;
    try {
      const query = grid.dataset.query ? grid.dataset.query + "&" : "";
      const response = await fetch("/api/search?" + query + "cursor=" + encodeURIComponent(grid.dataset.next));
      if (!response.ok) return;
      const page = await response.json();
      for (const item of page.items) grid.append(makeCard(item));
      if (page.next) grid.dataset.next = page.next; else delete grid.dataset.next;
    } finally {
      loading = false;
    }
  }, { rootMargin: "800px" });
  observer.observe(more);
}

function liveRows(grid) {
  if (grid.dataset.live !== "1" || !("EventSource" in window)) return;
  const source = new EventSource("/events?after=" + encodeURIComponent(grid.dataset.after || ""));
  source.addEventListener("item", (event) => {
    const item = JSON.parse(event.data);
    if (grid.querySelector('[data-id="' + Number(item.id) + '"]')) return;
    const empty = grid.querySelector(".empty");
    if (empty) empty.remove();
    grid.prepend(makeCard(item));
  });
}

function copyButtons() {
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = "copied";
      } catch (error) {
        button.textContent = "copy failed";
      }
    });
  }
}

function keyboard() {
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement) return;
    if (event.key === "/") {
      const search = document.querySelector("input[name=q]");
      if (search) { event.preventDefault(); search.focus(); }
      return;
    }
    if (event.key === "Escape" && location.pathname !== "/") { history.back(); return; }
    const cards = Array.from(document.querySelectorAll(".grid .card"));
    if (!cards.length) return;
    const step = { ArrowRight: 1, j: 1, ArrowLeft: -1, k: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    const at = cards.indexOf(document.activeElement);
    const next = cards[Math.max(0, Math.min(cards.length - 1, at < 0 ? 0 : at + step))];
    next.focus();
    next.scrollIntoView({ block: "nearest" });
  });
}

function autoSubmit() {
  for (const select of document.querySelectorAll("form.search select")) {
    select.addEventListener("change", () => select.form.submit());
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const grid = document.getElementById("grid");
  if (grid) { infiniteScroll(grid); liveRows(grid); }
  copyButtons();
  keyboard();
  autoSubmit();
});
