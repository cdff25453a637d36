// Keeps a dashboard page live: fetches its live part again every few seconds and
// puts it in place. The server renders that part with every value escaped, so it
// is inserted as it comes. No library, no build step.
"use strict";

(() => {
  const live = document.getElementById("live");
  const status = document.getElementById("live-status");
  if (!live || !live.dataset.liveUrl) {
    return;
  }
  const url = live.dataset.liveUrl;
  const everyMs = Number(live.dataset.refreshMs) || 2000;
  let busy = false;

  const show = (text, state) => {
    if (status) {
      status.textContent = text;
      status.dataset.state = state;
    }
  };

  const refresh = async () => {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      const response = await fetch(url, {
        cache: "no-store",
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (!response.ok) {
        show(`not updated: the worker answered ${response.status}`, "error");
        return;
      }
      live.innerHTML = await response.text();
      live.dataset.updates = String(Number(live.dataset.updates || 0) + 1);
      show(`live · ${new Date().toLocaleTimeString()}`, "live");
    } catch (error) {
      show("not updated: the worker did not answer", "error");
    } finally {
      busy = false;
    }
  };

  setInterval(refresh, everyMs);
  document.addEventListener("visibilitychange", refresh);

  // The account box in the header opens that account's page.
  const find = document.querySelector("[data-find-account]");
  if (find) {
    find.addEventListener("submit", (event) => {
      const account = find.elements.account.value.trim();
      event.preventDefault();
      if (account) {
        window.location.assign(`/accounts/${encodeURIComponent(account)}${window.location.search}`);
      }
    });
  }
})();
