// yuqing on-call console: live fragments over server-sent events, SLA countdowns, action button states.
// Plain JS with no build step; pages work without it (they are server-rendered), this only keeps them live.
(function () {
  "use strict";

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function duration(ms) {
    var s = Math.floor(ms / 1000);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var text = pad(m) + ":" + pad(s % 60);
    return h > 0 ? h + " 小时 " + text : text;
  }

  // Open deadlines come as ISO times; the countdown runs on this device's clock.
  function tickCountdowns() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var status = el.getAttribute("data-status");
      var left = Date.parse(el.getAttribute("data-due")) - now;
      var out = el.querySelector(".dl-left");
      if (!out || isNaN(left)) {
        return;
      }
      if (status === "breached" || left < 0) {
        el.classList.add("breached");
        out.textContent = "已超时 " + duration(Math.abs(left));
      } else {
        out.textContent = "剩余 " + duration(left);
      }
    });
  }

  function syncButtons(region) {
    var holder = region.querySelector("[data-allowed]");
    if (!holder) {
      return;
    }
    var state = region.querySelector(".summary .state");
    var current = document.querySelector("[data-current-state]");
    if (state && current) {
      current.textContent = state.textContent;
    }
    var allowed = holder.getAttribute("data-allowed").split(" ");
    document.querySelectorAll("button[name=action]").forEach(function (b) {
      b.disabled = allowed.indexOf(b.value) < 0;
    });
  }

  function announcements(region) {
    var map = {};
    region.querySelectorAll("[data-announce-key]").forEach(function (el) {
      map[el.getAttribute("data-announce-key")] = el.getAttribute("data-announce");
    });
    return map;
  }

  function announce(text) {
    var live = document.getElementById("announce");
    if (live && text) {
      live.textContent = text;
    }
  }

  function indicator(text, stale) {
    var el = document.querySelector("[data-live-indicator]");
    if (el) {
      el.textContent = text;
      el.classList.toggle("stale", !!stale);
    }
  }

  function follow(region) {
    if (!window.EventSource) {
      indicator("不支持实时更新，请手动刷新", true);
      return;
    }
    var params = new URLSearchParams({
      view: region.getAttribute("data-live-view"),
      v: region.getAttribute("data-version") || ""
    });
    if (region.hasAttribute("data-live-id")) {
      params.set("id", region.getAttribute("data-live-id"));
    }
    // A filtered, paged view follows its own filter and page.
    new URLSearchParams(region.getAttribute("data-live-query") || "").forEach(function (value, key) {
      params.set(key, value);
    });
    var source = new EventSource("/console/events?" + params.toString());
    source.addEventListener("open", function () {
      indicator("实时更新", false);
    });
    source.addEventListener("fragment", function (event) {
      var before = announcements(region);
      region.innerHTML = event.data;
      region.setAttribute("data-version", event.lastEventId);
      var after = announcements(region);
      var changed = Object.keys(after).filter(function (k) {
        return before[k] !== after[k];
      });
      announce(changed.map(function (k) { return after[k]; }).join("；"));
      syncButtons(region);
      tickCountdowns();
      var now = new Date();
      indicator("实时更新 · " + pad(now.getHours()) + ":" + pad(now.getMinutes()) + ":" + pad(now.getSeconds()), false);
    });
    source.addEventListener("expired", function () {
      source.close();
      window.location.href = "/console/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    });
    // The server ends each stream after a few seconds and the browser reconnects at once: only a
    // connection that stays down is worth showing.
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        indicator("实时更新已停止，请刷新页面", true);
        return;
      }
      window.setTimeout(function () {
        if (source.readyState === EventSource.CONNECTING) {
          indicator("连接中断，正在重连…", true);
        }
      }, 5000);
    });
  }

  // On a phone the filter form would fill the screen: fold it unless a filter is in use.
  function foldFilters() {
    var panel = document.querySelector(".filter-panel");
    if (panel && !panel.hasAttribute("data-active") && window.matchMedia("(max-width: 700px)").matches) {
      panel.removeAttribute("open");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    foldFilters();
    document.querySelectorAll("[data-live-view]").forEach(follow);
    tickCountdowns();
    window.setInterval(tickCountdowns, 1000);
  });
})();
