/* Relative times kept current on every page (base.html loads this): each <time data-relative datetime="…">
   (data-relative="ago": "6 minutes ago") is reworded from its timestamp every 30 s and after every htmx swap.
   The words are the server's (plant/templatetags/timewords.py: age, ago, and Django's timesince under them),
   computed the same way: tests/e2e/test_timewords.py compares the two over a table of moments. */
(function () {
  "use strict";

  var UNITS = ["year", "month", "week", "day", "hour", "minute"];
  var CHUNKS_S = [7 * 86400, 86400, 3600, 60];  // after the years and months
  var MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];  // Django's (a pivot never on 29 Feb)

  function words(n, unit) { return n + "\u00a0" + unit + (n === 1 ? "" : "s"); }  // never wrapped apart

  function msOfDay(d) {
    return ((d.getUTCHours() * 60 + d.getUTCMinutes()) * 60 + d.getUTCSeconds()) * 1000 + d.getUTCMilliseconds();
  }

  // Django's timesince(d, now) with its default depth of 2, for a moment at least a minute before now; in
  // UTC, as the server's (a stored time is in UTC, and the filter does not convert it).
  function timesince(d, now) {
    var months = (now.getUTCFullYear() - d.getUTCFullYear()) * 12 + now.getUTCMonth() - d.getUTCMonth();
    if (d.getUTCDate() > now.getUTCDate() || (d.getUTCDate() === now.getUTCDate() && msOfDay(d) > msOfDay(now))) {
      months -= 1;
    }
    var years = Math.floor(months / 12);
    months -= years * 12;
    var pivot = d.getTime();
    if (years || months) {  // d moved on by the years and months (its second, without the fraction)
      var year = d.getUTCFullYear() + years, month = d.getUTCMonth() + months;
      if (month > 11) { month -= 12; year += 1; }
      pivot = Date.UTC(year, month, Math.min(MONTH_DAYS[month], d.getUTCDate()),
                       d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds());
    }
    var remaining = (now.getTime() - pivot) / 1000;
    var parts = [years, months];
    CHUNKS_S.forEach(function (chunk) {
      var count = Math.floor(remaining / chunk);
      parts.push(count);
      remaining -= chunk * count;
    });
    var i = 0;
    while (i < parts.length && parts[i] === 0) i++;
    var result = [];
    for (; i < parts.length && result.length < 2 && parts[i] !== 0; i++) result.push(words(parts[i], UNITS[i]));
    return result.length ? result.join(", ") : words(0, "minute");
  }

  // timewords.age and .ago: how long since the ISO moment, at `now` (milliseconds since the epoch).
  function age(iso, now) {
    var moment = new Date(Date.parse(iso));
    if (now - moment.getTime() < 60000) return "under a minute";
    return timesince(moment, new Date(now));
  }
  function ago(iso, now) {
    var text = age(iso, now);
    return text === "under a minute" ? "just now" : text + " ago";
  }

  function refresh() {
    var now = Date.now();
    document.querySelectorAll("time[data-relative][datetime]").forEach(function (el) {
      var iso = el.getAttribute("datetime");
      el.textContent = el.getAttribute("data-relative") === "ago" ? ago(iso, now) : age(iso, now);
    });
  }

  window.vigilTimewords = {age: age, ago: ago, refresh: refresh};
  document.addEventListener("DOMContentLoaded", refresh);
  document.addEventListener("htmx:afterSettle", refresh);
  setInterval(refresh, 30000);
})();
