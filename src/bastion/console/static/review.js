/* The item view's behaviour: reveal (click, toggle key or hold), the user's blur strength, lease renewal every
   minute, exposure reports, break reminders, the deadline countdown and keyboard shortcuts (help on "?").
   Small and dependency-free; the page works without it (forms post normally, media stays blurred). */
(function () {
  "use strict";
  var root = document.getElementById("review-item");
  if (!root) { return; }
  var d = root.dataset;
  var itemId = d.itemId;
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var media = document.getElementById("media");
  var mediaEl = document.getElementById("media-el");
  var revealBtn = document.getElementById("reveal");
  var holdBtn = document.getElementById("hold-reveal");
  var live = document.getElementById("live-status");
  var leaseAlert = document.getElementById("lease-alert");
  var help = document.getElementById("help");
  var form = document.getElementById("decision-form");
  var hasMedia = d.hasMedia === "1";

  function say(text) { if (live) { live.textContent = text; } }

  function post(url, params, keepalive) {
    var body = new URLSearchParams(params || {});
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin", keepalive: !!keepalive,
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }
    });
  }

  /* -- blur and reveal ------------------------------------------------------------------------------------------ */
  if (media) {
    var blur = parseInt(d.blur, 10);
    if (!isNaN(blur)) { media.style.setProperty("--wb-blur", blur + "px"); }
  }
  var toggled = false, held = false;
  function revealed() { return toggled || held; }
  function paint() {
    if (!media) { return; }
    media.classList.toggle("revealed", revealed());
    if (revealBtn) {
      revealBtn.setAttribute("aria-pressed", toggled ? "true" : "false");
      revealBtn.textContent = toggled ? "Hide" : "Reveal";
    }
  }
  function toggleReveal() { toggled = !toggled; paint(); say(toggled ? "Media revealed" : "Media hidden"); }
  function hold(on) { held = on; paint(); }
  if (revealBtn) { revealBtn.addEventListener("click", toggleReveal); }
  if (media) { media.addEventListener("click", function (ev) { if (ev.target.tagName !== "VIDEO") { toggleReveal(); } }); }
  if (holdBtn) {
    ["pointerdown"].forEach(function (t) { holdBtn.addEventListener(t, function () { hold(true); }); });
    ["pointerup", "pointerleave", "pointercancel", "blur"].forEach(function (t) {
      holdBtn.addEventListener(t, function () { hold(false); });
    });
    holdBtn.addEventListener("keydown", function (ev) {
      if (ev.key === " " || ev.key === "Enter") { ev.preventDefault(); hold(true); }
    });
    holdBtn.addEventListener("keyup", function (ev) { if (ev.key === " " || ev.key === "Enter") { hold(false); } });
  }
  if (mediaEl && mediaEl.tagName === "VIDEO" && d.autoplay === "1") {
    mediaEl.muted = true;
    var played = mediaEl.play();
    if (played && played.catch) { played.catch(function () {}); }
  }

  /* -- lease renewal -------------------------------------------------------------------------------------------- */
  var leaseLost = false;
  function renew() {
    if (leaseLost) { return; }
    post(d.renewUrl).then(function (r) {
      if (r.ok) { return; }
      return r.json().then(function (body) {
        var err = (body && body.error) || {};
        if (r.status === 409 || r.status === 404) {
          leaseLost = true;
          leaseAlert.textContent = (err.message || "Your lease on this item was lost.") +
            " Another reviewer may have it now: your decision would be refused. Go back to the queues.";
          leaseAlert.setAttribute("data-code", err.code || "lease_lost");
          leaseAlert.hidden = false;
        }
      });
    }).catch(function () { say("Could not reach the server to keep this item; retrying."); });
  }
  setInterval(renew, 60000);
  document.addEventListener("visibilitychange", function () {  /* back to the tab: check the lease at once */
    if (document.visibilityState === "visible") { renew(); }
  });

  /* -- exposure, breaks and the cap ----------------------------------------------------------------------------- */
  var onScreen = 0, shown = 0, unsentScreen = 0, unsentShown = 0;
  var exposedToday = parseFloat(d.exposedToday) || 0;
  var breakMinutes = parseInt(d.breakMinutes, 10) || 0;
  var nextBreakAt = breakMinutes > 0 ? (Math.floor(exposedToday / (breakMinutes * 60)) + 1) * breakMinutes * 60 : null;
  var breakBox = document.getElementById("break-alert");
  function report(keepalive) {
    if (!hasMedia || unsentScreen < 0.5) { return; }
    var params = { item_id: itemId, seconds: unsentScreen.toFixed(1), revealed_seconds: Math.min(unsentShown, unsentScreen).toFixed(1) };
    unsentScreen = 0; unsentShown = 0;
    if (keepalive && navigator.sendBeacon) {
      var fd = new FormData();
      Object.keys(params).forEach(function (k) { fd.append(k, params[k]); });
      fd.append("csrf_token", csrf);
      navigator.sendBeacon(d.exposureUrl, fd);
      return;
    }
    post(d.exposureUrl, params).then(function (r) { return r.ok ? r.json() : null; }).then(function (body) {
      if (body && body.cap_reached) {
        var capBox = document.getElementById("cap-alert");
        if (capBox) { capBox.hidden = false; }
      }
    }).catch(function () {});
  }
  if (hasMedia) {
    setInterval(function () {
      if (document.visibilityState !== "visible") { return; }
      onScreen += 1; unsentScreen += 1;
      if (revealed()) { shown += 1; unsentShown += 1; }
      if (nextBreakAt !== null && exposedToday + onScreen >= nextBreakAt && breakBox) {
        nextBreakAt += breakMinutes * 60;
        breakBox.hidden = false;
        toggled = false; held = false; paint();
        var btn = document.getElementById("break-dismiss");
        if (btn) { btn.focus(); }
      }
    }, 1000);
    setInterval(function () { report(false); }, 15000);
    window.addEventListener("pagehide", function () { report(true); });
    if (form) { form.addEventListener("submit", function () { report(true); }); }
    var skipForm = document.getElementById("skip-form");
    if (skipForm) { skipForm.addEventListener("submit", function () { report(true); }); }
  }
  var dismiss = document.getElementById("break-dismiss");
  if (dismiss) { dismiss.addEventListener("click", function () { breakBox.hidden = true; }); }

  /* -- deadline countdown --------------------------------------------------------------------------------------- */
  var deadlineEl = document.getElementById("deadline");
  if (deadlineEl) {
    var due = Date.parse(deadlineEl.getAttribute("data-deadline"));
    var tick = function () {
      var left = Math.round((due - Date.now()) / 1000);
      if (left <= 0) { deadlineEl.textContent = "overdue"; return; }
      var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
      deadlineEl.textContent = (h ? h + " h " : "") + m + " min " + s + " s left";
    };
    tick();
    setInterval(tick, 1000);
  }

  /* -- the decision form ---------------------------------------------------------------------------------------- */
  var category = document.getElementById("category");
  var policy = document.getElementById("policy_reference");
  var restrictIn = document.getElementById("restrict_in");
  var violatingFields = document.getElementById("violating-fields");
  function verdict() { var c = form && form.querySelector('input[name="verdict"]:checked'); return c ? c.value : ""; }
  function syncRequired() {
    var v = verdict() === "violating";
    if (category) { category.required = v; }
    if (policy) { policy.required = v; }
    if (violatingFields) { violatingFields.classList.toggle("inactive", !v); }
    var restrict = document.getElementById("action-restrict");
    if (restrictIn) { restrictIn.required = v && restrict && restrict.checked; }
  }
  if (form) {
    form.addEventListener("change", syncRequired);
    syncRequired();
  }
  function choose(value) {
    var radio = document.getElementById("v-" + value);
    if (!radio) { return; }
    radio.checked = true;
    syncRequired();
    if (value === "violating" && category) { category.focus(); }
    else { var submit = document.getElementById("submit-decision"); if (submit) { submit.focus(); } }
    say("Verdict: " + value.replace(/_/g, " "));
  }

  /* -- help overlay and keyboard shortcuts ---------------------------------------------------------------------- */
  var lastFocus = null;
  function showHelp(show) {
    if (!help) { return; }
    if (show) { lastFocus = document.activeElement; help.hidden = false; help.focus(); }
    else { help.hidden = true; if (lastFocus && lastFocus.focus) { lastFocus.focus(); } }
  }
  var showHelpBtn = document.getElementById("show-help");
  if (showHelpBtn) { showHelpBtn.addEventListener("click", function () { showHelp(true); }); }
  var closeHelp = document.getElementById("close-help");
  if (closeHelp) { closeHelp.addEventListener("click", function () { showHelp(false); }); }

  var sections = Array.prototype.slice.call(document.querySelectorAll("section.panel"));
  function moveSection(step) {
    if (!sections.length) { return; }
    var current = sections.findIndex(function (s) { return s.contains(document.activeElement); });
    var next = current < 0 ? 0 : Math.max(0, Math.min(sections.length - 1, current + step));
    sections[next].focus();
    sections[next].scrollIntoView({ block: "start" });
  }
  function typing(el) {
    if (!el) { return false; }
    var tag = el.tagName;
    return tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && !/^(radio|checkbox|button|submit)$/.test(el.type));
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (ev.key === "Escape") {
      if (help && !help.hidden) { showHelp(false); return; }
      if (typing(document.activeElement)) { document.activeElement.blur(); return; }
      toggled = false; held = false; paint(); return;
    }
    if (typing(ev.target)) { return; }
    if (help && !help.hidden && ev.key !== "?") { return; }
    var k = ev.key;
    var handled = true;
    switch (k) {
      case "?": showHelp(help && help.hidden); break;
      case "r": toggleReveal(); break;
      case "h": if (!ev.repeat) { hold(true); } break;
      case "p": if (mediaEl && mediaEl.play) { if (mediaEl.paused) { mediaEl.play(); } else { mediaEl.pause(); } } break;
      case "m": if (mediaEl && "muted" in mediaEl) { mediaEl.muted = !mediaEl.muted; say(mediaEl.muted ? "Muted" : "Sound on"); } break;
      case "v": choose("violating"); break;
      case "n": choose("not_violating"); break;
      case "e": choose("escalate_lead"); break;
      case "l": choose("escalate_law_enforcement"); break;
      case "u": choose("uphold"); break;
      case "o": choose("overturn"); break;
      case "b": var cb = document.getElementById("add-to-bank"); if (cb && !cb.disabled) { cb.checked = !cb.checked; say(cb.checked ? "Will add to bank" : "Will not add to bank"); } break;
      case "c": var note = document.getElementById("note"); if (note) { note.focus(); } break;
      case "d": if (form) { form.requestSubmit(); } break;
      case "s": var skip = document.getElementById("skip-form"); if (skip) { skip.requestSubmit(); } break;
      case "j": moveSection(1); break;
      case "k": moveSection(-1); break;
      default: handled = false;
    }
    if (handled) { ev.preventDefault(); }
  });
  document.addEventListener("keyup", function (ev) { if (ev.key === "h") { hold(false); } });
})();
