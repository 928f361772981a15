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
  const margin = 800;
  let loading = false;
  const load = async () => {
    if (loading || !grid.dataset.next) return;
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
  };
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) load();
  }, { rootMargin: margin + "px" });
  observer.observe(more);
  // A tall screen holds the end of the first page: ask for the next one now, not at the
  // observer's first report (which waits for a rendering step: 0.7 s on a busy machine).
  if (more.getBoundingClientRect().top < window.innerHeight + margin) load();
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

// The grid's order, kept for the item page: when a card is opened, the ids shown (in order),
// the grid's query and next cursor, and the grid's address go to sessionStorage (this tab).
const ORDER = "forge-gallery-order";

function readOrder() {
  try {
    const order = JSON.parse(sessionStorage.getItem(ORDER) || "null");
    if (order && Array.isArray(order.ids)) return order;
  } catch (error) { /* no storage, or not ours: no order */ }
  return null;
}

function writeOrder(order) {
  try { sessionStorage.setItem(ORDER, JSON.stringify(order)); } catch (error) { /* full */ }
}

function keepGridOrder(grid) {
  grid.addEventListener("click", (event) => {
    const card = event.target instanceof Element ? event.target.closest(".card") : null;
    if (!card) return;
    writeOrder({
      ids: Array.from(grid.querySelectorAll(".card")).map((c) => Number(c.dataset.id)),
      query: grid.dataset.query || "",
      next: grid.dataset.next || "",
      grid: location.pathname + location.search,
      fromGrid: true,
    });
  });
}

// The next page of the grid's order (the same /api/search the grid scrolls with).
async function moreOfOrder(order) {
  if (!order.next) return false;
  const query = order.query ? order.query + "&" : "";
  const response = await fetch("/api/search?" + query + "cursor=" + encodeURIComponent(order.next));
  if (!response.ok) return false;
  const page = await response.json();
  order.ids.push(...page.items.map((item) => Number(item.id)));
  order.next = page.next || "";
  writeOrder(order);
  return page.items.length > 0;
}

// Item page: previous / next in the grid's order (left/right, k/j, or the arrows shown),
// Esc back to the grid. Moving between items replaces the history entry, so Back (and Esc)
// return to the grid where it was scrolled.
function itemSteps(detail) {
  const id = Number(detail.dataset.id);
  const order = readOrder();
  const at = order ? order.ids.indexOf(id) : -1;
  const go = async (step) => {
    if (at < 0) return;
    if (at + step >= order.ids.length && !(await moreOfOrder(order))) return;
    const target = order.ids[at + step];
    if (target !== undefined) location.replace("/item/" + Number(target));
  };
  if (at >= 0) {
    const nav = document.createElement("nav");
    nav.className = "steps";
    for (const [label, step, rel] of [["\u2039 previous", -1, "prev"], ["next \u203a", 1, "next"]]) {
      const link = document.createElement("a");
      link.className = "button";
      link.rel = rel;
      link.href = "#";
      link.textContent = label;
      if (at + step < 0 || (at + step >= order.ids.length && !order.next)) link.hidden = true;
      link.addEventListener("click", (event) => { event.preventDefault(); go(step); });
      nav.append(link);
    }
    detail.prepend(nav);
  }
  return {
    step: go,
    back: () => {
      if (order && order.fromGrid && history.length > 1) history.back();
      else location.assign(order && order.grid ? order.grid : "/");
    },
  };
}

function keyboard() {
  const detail = document.querySelector("main.detail[data-id]");
  const steps = detail ? itemSteps(detail) : null;
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "/") {
      const search = document.querySelector("input[name=q]");
      if (search) { event.preventDefault(); search.focus(); }
      return;
    }
    const step = { ArrowRight: 1, j: 1, ArrowLeft: -1, k: -1 }[event.key];
    if (steps) {
      if (event.key === "Escape") { event.preventDefault(); steps.back(); }
      else if (step) { event.preventDefault(); steps.step(step); }
      return;
    }
    if (event.key === "Escape" && location.pathname !== "/") { history.back(); return; }
    const cards = Array.from(document.querySelectorAll(".grid .card"));
    if (!cards.length || !step) return;
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
  if (grid) { infiniteScroll(grid); liveRows(grid); keepGridOrder(grid); }
  copyButtons();
  keyboard();
  autoSubmit();
});
