// weir dashboard: refreshes the server-rendered sections in place, turns two successive
// counter readings into rates, and sends the token-gated admin calls. Served from the admin
// listener only; it talks to nothing else.
"use strict";

(function () {
  const TOKEN_KEY = "weir.admin.token";
  // Seconds between refreshes: ?refresh=N (1 to 60), default 5.
  const every = Math.min(60, Math.max(1, Number(new URLSearchParams(location.search).get("refresh")) || 5));
  // The previous reading of every counter: key -> {value, at (ms)}.
  let previous = new Map();
  let timer = 0;

  document.documentElement.classList.add("js");

  function readCounters(root, at) {
    const now = new Map();
    root.querySelectorAll("data[data-counter]").forEach((el) => {
      now.set(el.dataset.counter, { value: Number(el.value), at: at });
    });
    return now;
  }

  function formatRate(perSecond, unit) {
    if (unit === "bytes") {
      const units = ["B", "KiB", "MiB", "GiB", "TiB"];
      let v = perSecond;
      let i = 0;
      while (v >= 1024 && i + 1 < units.length) {
        v /= 1024;
        i += 1;
      }
      return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i] + "/s";
    }
    return (perSecond < 10 ? perSecond.toFixed(2) : perSecond.toFixed(1)) + "/s";
  }

  // Rates and increases from the previous reading to this one (a counter that went down, as
  // after a restart, shows nothing until the next reading).
  function showRates(root, now) {
    root.querySelectorAll("output[data-rate-of]").forEach((el) => {
      const key = el.dataset.rateOf;
      const a = previous.get(key);
      const b = now.get(key);
      if (!a || !b || b.at <= a.at || b.value < a.value) {
        return;
      }
      el.textContent = formatRate(((b.value - a.value) * 1000) / (b.at - a.at), el.dataset.unit);
      el.title = "over the last " + ((b.at - a.at) / 1000).toFixed(1) + " s";
    });
    root.querySelectorAll("output[data-delta-of]").forEach((el) => {
      const key = el.dataset.deltaOf;
      const a = previous.get(key);
      const b = now.get(key);
      if (a && b && b.value > a.value) {
        el.textContent = "+" + (b.value - a.value) + " in the last " + ((b.at - a.at) / 1000).toFixed(0) + " s";
        el.classList.add("recent");
      }
    });
  }

  function setRefreshState(text, failed) {
    const el = document.getElementById("refresh-state");
    el.textContent = text;
    el.classList.toggle("failed", failed);
  }

  async function refresh() {
    try {
      const response = await fetch("/", { cache: "no-store", credentials: "omit" });
      if (!response.ok) {
        throw new Error("GET / answered " + response.status);
      }
      const text = await response.text();
      const at = Date.now();
      const doc = new DOMParser().parseFromString(text, "text/html");
      const fresh = doc.getElementById("live");
      const live = document.getElementById("live");
      if (!fresh || !live) {
        throw new Error("GET / answered a page without its sections");
      }
      // What the reader opened stays open.
      live.querySelectorAll("details[id]").forEach((d) => {
        const twin = fresh.querySelector("#" + d.id);
        if (twin) {
          twin.open = d.open;
        }
      });
      const now = readCounters(fresh, at);
      showRates(fresh, now);
      previous = now;
      live.replaceWith(document.adoptNode(fresh));
      setRefreshState("Live: refreshed every " + every + " s, last at " + new Date(at).toISOString().slice(11, 19) + " UTC.", false);
    } catch (e) {
      setRefreshState("Refresh failed (" + e.message + "); showing older numbers, retrying.", true);
    }
    timer = setTimeout(refresh, every * 1000);
  }

  // --- the token -----------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function showTokenState() {
    document.getElementById("token-state").textContent = token()
      ? "Token set for this tab."
      : "No token: actions answer 401.";
    document.getElementById("token-forget").hidden = !token();
  }

  // --- admin calls ---------------------------------------------------------------------

  function showResult(text, failed) {
    const el = document.getElementById("result");
    el.textContent = text;
    el.classList.toggle("failed", failed);
  }

  // Sends one admin call with the token; shows the answer as the API words it.
  async function call(method, path, body) {
    const headers = { Authorization: "Bearer " + token() };
    const init = { method: method, headers: headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const line = method + " " + path;
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      showResult(line + ": no answer (" + e.message + ")", true);
      return;
    }
    const text = await response.text();
    let words = text;
    try {
      const json = JSON.parse(text);
      if (!response.ok && typeof json.error === "string") {
        words = json.error;
      } else if (!response.ok && Array.isArray(json.errors)) {
        words = json.errors.join("\n");
      } else {
        words = JSON.stringify(json);
      }
    } catch {
      // Not JSON (a 204 has no body): the status says it.
    }
    showResult(line + " → " + response.status + (words ? ": " + words : ""), !response.ok);
    clearTimeout(timer);
    refresh();
  }

  function value(id) {
    return document.getElementById(id).value.trim();
  }

  function on(id, handler) {
    document.getElementById(id).addEventListener("submit", (event) => {
      event.preventDefault();
      handler();
    });
  }

  function start() {
    on("token-form", () => {
      const input = document.getElementById("token");
      if (input.value.trim()) {
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      }
      input.value = "";
      showTokenState();
    });
    document.getElementById("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showTokenState();
    });
    on("purge-form", () => {
      const body = { zone: value("purge-zone") };
      body[value("purge-kind") === "key" ? "key" : "url"] = value("purge-target");
      call("POST", "/purge", body);
    });
    on("register-form", () => {
      const upstream = value("register-upstream");
      call("POST", "/upstreams/" + encodeURIComponent(upstream) + "/servers", {
        tier: value("register-tier"),
        addr: value("register-addr"),
        ttl: value("register-ttl"),
      });
    });
    on("reload-form", () => call("POST", "/reload"));
    // Remove buttons live in the refreshed sections: one listener on the body.
    document.body.addEventListener("click", (event) => {
      const button = event.target.closest("button.remove");
      if (button) {
        call(
          "DELETE",
          "/upstreams/" + encodeURIComponent(button.dataset.upstream) + "/servers/" + encodeURIComponent(button.dataset.addr),
        );
      }
    });
    showTokenState();
    previous = readCounters(document, Date.now());
    setRefreshState("Live: refreshed every " + every + " s.", false);
    timer = setTimeout(refresh, every * 1000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
