// Accessibility checks run in the page under test by `testkit::browser`
// (WCAG 2.1 AA). Plain JavaScript, no library. Each `Browser` method sends
// this text followed by one `return a11y.…(…)`; state the keyboard checks
// keep between WebDriver calls lives in `window.__a11y`.
//
// What is approximated (and so documented on the Rust side too): an
// element's background is the composite of its and its DOM ancestors'
// `background-color`s (not of whatever is painted under it by absolute
// positioning); an ancestor's `opacity` is folded into the text colour's
// alpha; text in shadow roots, `::before`/`::after` and placeholders is not
// walked.
var a11y = (function () {
  'use strict';

  var WHITE = [255, 255, 255, 1];
  var canvas = document.createElement('canvas');
  canvas.width = 1;
  canvas.height = 1;
  var ctx = canvas.getContext('2d', { willReadFrequently: true });

  // A computed CSS colour as [r, g, b, a]: r, g, b in 0..255, a in 0..1.
  function rgba(css) {
    var m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:\s*[,/]\s*([\d.]+)(%?))?\s*\)$/.exec(css);
    if (m) {
      var a = m[4] === undefined ? 1 : parseFloat(m[4]) / (m[5] ? 100 : 1);
      return [parseFloat(m[1]), parseFloat(m[2]), parseFloat(m[3]), a];
    }
    // Other syntaxes (color(), oklch(), …): the canvas turns them into sRGB.
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = 'rgba(0, 0, 0, 0)';
    ctx.fillStyle = css;
    ctx.fillRect(0, 0, 1, 1);
    var d = ctx.getImageData(0, 0, 1, 1).data;
    return [d[0], d[1], d[2], d[3] / 255];
  }

  function fmt(c) {
    return 'rgb(' + c.slice(0, 3).map(Math.round).join(', ') + ')';
  }

  // `top` (with alpha) painted over the opaque `bottom`.
  function over(top, bottom) {
    var a = top[3];
    return [0, 1, 2].map(function (i) { return top[i] * a + bottom[i] * (1 - a); }).concat([1]);
  }

  // WCAG relative luminance (the sRGB threshold as corrected in the
  // WCAG 2.x errata, 0.04045; 2.1's text says 0.03928: no colour with
  // 8-bit channels tells them apart).
  function luminance(c) {
    function ch(v) {
      v /= 255;
      return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    }
    return 0.2126 * ch(c[0]) + 0.7152 * ch(c[1]) + 0.0722 * ch(c[2]);
  }

  function ratio(a, b) {
    var la = luminance(a);
    var lb = luminance(b);
    return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
  }

  // The opaque colour behind `el`'s content: the background-colors of it
  // and its ancestors composited, over white if none is opaque; or
  // { image } naming the element whose background image lies under it
  // (no ratio can be computed then).
  function background(el) {
    var layers = [];
    for (var e = el; e && e.nodeType === 1; e = e.parentElement) {
      var s = getComputedStyle(e);
      if (s.backgroundImage && s.backgroundImage !== 'none') { return { image: describe(e) }; }
      var c = rgba(s.backgroundColor);
      if (c[3] > 0) { layers.push(c); }
      if (c[3] >= 1) { break; }
    }
    var bg = WHITE;
    for (var i = layers.length - 1; i >= 0; i--) { bg = over(layers[i], bg); }
    return { color: bg };
  }

  function opacity(el) {
    var o = 1;
    for (var e = el; e && e.nodeType === 1; e = e.parentElement) { o *= parseFloat(getComputedStyle(e).opacity); }
    return o;
  }

  function describe(e) {
    var d = e.tagName.toLowerCase();
    if (e.id) { d += '#' + e.id; }
    var cls = typeof e.className === 'string' ? e.className.trim() : '';
    if (cls) { d += '.' + cls.split(/\s+/).join('.'); }
    return d;
  }

  function snippet(t) {
    t = t.replace(/\s+/g, ' ').trim();
    return t.length > 48 ? t.slice(0, 47) + '…' : t;
  }

  // Shown on screen: laid out, not hidden, not fully transparent, bigger
  // than a pixel (visually-hidden text is for screen readers).
  function visible(e) {
    if (!e.getClientRects().length) { return false; }
    var r = e.getBoundingClientRect();
    if (r.width <= 1 || r.height <= 1) { return false; }
    if (getComputedStyle(e).visibility !== 'visible') { return false; }
    return opacity(e) > 0;
  }

  var VALUE_TYPES = /^(text|search|url|tel|email|password|number|date|time|datetime-local|month|week)$/;

  // The text `e` itself shows: its own text nodes, or a text field's value.
  function ownText(e) {
    var t = '';
    for (var n = e.firstChild; n; n = n.nextSibling) {
      if (n.nodeType === 3) { t += n.nodeValue; }
    }
    if ((e.tagName === 'INPUT' && VALUE_TYPES.test(e.type)) || e.tagName === 'TEXTAREA') { t += e.value; }
    return t.trim();
  }

  // Every visible element showing text of its own, with its text.
  function texts() {
    var out = [];
    var all = document.body ? document.body.querySelectorAll('*') : [];
    for (var i = 0; i < all.length; i++) {
      var e = all[i];
      if (/^(SCRIPT|STYLE|NOSCRIPT|TEMPLATE|OPTION)$/.test(e.tagName)) { continue; }
      var t = ownText(e);
      if (t && visible(e)) { out.push({ el: e, text: t }); }
    }
    return out;
  }

  // Large text (WCAG): at least 18pt (24px), or 14pt (18.66px) and bold.
  function large(s) {
    var px = parseFloat(s.fontSize);
    var weight = parseFloat(s.fontWeight) || (s.fontWeight === 'bold' ? 700 : 400);
    return px >= 24 || (px >= 18.66 && weight >= 700);
  }

  function contrastFailures() {
    var out = [];
    texts().forEach(function (x) {
      var e = x.el;
      // WCAG 1.4.3 exempts inactive controls.
      if (e.closest(':disabled')) { return; }
      var s = getComputedStyle(e);
      var where = describe(e) + ' "' + snippet(x.text) + '"';
      var bg = background(e);
      if (bg.image) {
        out.push(where + ': a background image (on ' + bg.image + ') under the text; no ratio can be computed');
        return;
      }
      var fg = rgba(s.color);
      fg[3] *= opacity(e);
      var shown = over(fg, bg.color);
      var r = ratio(shown, bg.color);
      var need = large(s) ? 3 : 4.5;
      if (r < need) {
        out.push(where + ': ' + r.toFixed(2) + ':1, needs ' + need + ':1 (' + fmt(shown) + ' on ' +
          fmt(bg.color) + ', ' + s.fontSize + ' weight ' + s.fontWeight + ')');
      }
    });
    return out;
  }

  function smallText(minPx) {
    var out = [];
    texts().forEach(function (x) {
      var px = parseFloat(getComputedStyle(x.el).fontSize);
      if (px < minPx) { out.push(describe(x.el) + ' "' + snippet(x.text) + '": ' + px + 'px'); }
    });
    return out;
  }

  // --- the keyboard ---------------------------------------------------------

  function state() {
    if (!window.__a11y) { window.__a11y = { first: null, list: [], unfocused: [], reached: [] }; }
    return window.__a11y;
  }

  // Focus is nowhere, and the next Tab goes to the page's first stop.
  function toTop() {
    var b = document.body;
    var had = b.getAttribute('tabindex');
    b.setAttribute('tabindex', '-1');
    b.focus();
    if (had === null) { b.removeAttribute('tabindex'); } else { b.setAttribute('tabindex', had); }
    window.__a11y = null;
    state();
    return true;
  }

  function focusDescription(e) {
    var d = describe(e);
    var label = e.getAttribute('aria-label');
    var t = snippet(e.innerText || e.value || '');
    if (t) { d += ' "' + t + '"'; }
    if (label) { d += ' aria-label="' + label + '"'; }
    return d;
  }

  // What has focus now: { none } when nothing (the page itself) has,
  // otherwise its description and whether the walk came back to its first
  // stop. The first call of a walk sets that first stop.
  function focused() {
    var st = state();
    var e = document.activeElement;
    if (!e || e === document.body || e === document.documentElement) { return { none: true }; }
    if (!st.first) { st.first = e; return { desc: focusDescription(e), wrapped: false }; }
    return { desc: focusDescription(e), wrapped: e === st.first };
  }

  function matches(css) {
    var e = document.activeElement;
    return !!(e && e !== document.body && e.matches(css));
  }

  var FOCUSABLE = 'a[href], area[href], button, input, select, textarea, iframe, summary, ' +
    '[tabindex], [contenteditable=""], [contenteditable="true"]';

  // The indicator's parts: the outline and box-shadows that paint.
  function indicator(s) {
    var parts = [];
    if (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) {
      var oc = rgba(s.outlineColor);
      if (oc[3] > 0) { parts.push({ what: 'outline ' + s.outlineWidth, color: oc }); }
    }
    if (s.boxShadow && s.boxShadow !== 'none') {
      // Shadows are comma-separated; a colour may hold commas itself.
      s.boxShadow.split(/,(?![^(]*\))/).forEach(function (sh) {
        var m = /(rgba?\([^)]*\)|color\([^)]*\)|[a-z]+\([^)]*\))/.exec(sh);
        var lengths = sh.replace(m ? m[0] : '', '').match(/-?[\d.]+px/g) || [];
        var blur = parseFloat(lengths[2] || '0');
        var spread = parseFloat(lengths[3] || '0');
        var c = rgba(m ? m[0] : 'currentcolor');
        if (c[3] > 0 && (blur > 0 || spread > 0)) { parts.push({ what: 'box-shadow', color: c }); }
      });
    }
    return parts;
  }

  function look(e) {
    var s = getComputedStyle(e);
    return [s.outlineStyle, s.outlineWidth, s.outlineColor, s.boxShadow].join(' | ');
  }

  // Notes every focusable element and how it looks unfocused; returns how
  // many there are (the walk then presses Tab that often and some more).
  function focusPrepare() {
    toTop();
    var st = state();
    var all = document.querySelectorAll(FOCUSABLE);
    for (var i = 0; i < all.length; i++) {
      var e = all[i];
      if (e.disabled || e.tabIndex < 0 || !visible(e) || (e.tagName === 'INPUT' && e.type === 'hidden')) { continue; }
      st.list.push(e);
      st.unfocused.push(look(e));
      st.reached.push(false);
    }
    return st.list.length;
  }

  // Checks the element a Tab just focused: null when its focus shows (an
  // outline or box-shadow that paints, differs from how it looks unfocused
  // and has 3:1 against the background around it: WCAG 2.4.7 and 1.4.11),
  // else what is wrong. { none } when the page itself has focus.
  function focusCheck() {
    var st = state();
    var e = document.activeElement;
    if (!e || e === document.body || e === document.documentElement) { return { none: true }; }
    var i = st.list.indexOf(e);
    var wrapped = i >= 0 && st.reached[i];
    if (i >= 0) { st.reached[i] = true; }
    var where = focusDescription(e);
    var parts = indicator(getComputedStyle(e));
    if (!parts.length) { return { wrapped: wrapped, failure: where + ': no focus indicator (outline and box-shadow paint nothing)' }; }
    if (i >= 0 && look(e) === st.unfocused[i]) {
      return { wrapped: wrapped, failure: where + ': looks the same focused and unfocused (' + look(e) + ')' };
    }
    var around = background(e.parentElement || e);
    if (around.image) { return { wrapped: wrapped, failure: where + ': a background image around it (on ' + around.image + '); no ratio can be computed' }; }
    var best = 0;
    parts.forEach(function (p) { best = Math.max(best, ratio(over(p.color, around.color), around.color)); });
    if (best < 3) {
      return {
        wrapped: wrapped,
        failure: where + ': focus indicator ' + best.toFixed(2) + ':1 against ' + fmt(around.color) +
          ', needs 3:1 (' + parts.map(function (p) { return p.what + ' ' + fmt(p.color); }).join(', ') + ')'
      };
    }
    return { wrapped: wrapped, failure: null };
  }

  function unreached() {
    var st = state();
    return st.list.filter(function (e, i) { return !st.reached[i] && e.isConnected; }).map(function (e) {
      return focusDescription(e) + ': focusable, but Tab never reached it';
    });
  }

  // --- hover ------------------------------------------------------------------

  var REVEALING = ['display', 'visibility', 'opacity'];

  // Style rules under a `:hover` selector (their own, or a nesting
  // parent's) that set display, visibility or opacity: content a pointer
  // reveals, out of reach by touch and keyboard.
  function hoverRevealRules() {
    var out = [];
    function walk(rules, where, hovered) {
      for (var i = 0; i < rules.length; i++) {
        var r = rules[i];
        var hover = hovered || (typeof r.selectorText === 'string' && r.selectorText.indexOf(':hover') >= 0);
        if (hover && r.style) {
          var set = REVEALING.filter(function (p) { return r.style.getPropertyValue(p) !== ''; });
          if (set.length) {
            out.push(r.selectorText + ' { ' + set.map(function (p) { return p + ': ' + r.style.getPropertyValue(p); }).join('; ') + ' } in ' + where);
          }
        }
        if (r.styleSheet) { sheet(r.styleSheet); }
        if (r.cssRules) { walk(r.cssRules, where, hover); }
      }
    }
    function sheet(s) {
      var where = s.href || 'a <style> element';
      var rules;
      try { rules = s.cssRules; } catch (e) { out.push(where + ': its rules cannot be read (another origin), so not checked'); return; }
      walk(rules, where, false);
    }
    Array.prototype.forEach.call(document.styleSheets, sheet);
    (document.adoptedStyleSheets || []).forEach(sheet);
    return out;
  }

  return {
    contrastFailures: contrastFailures,
    smallText: smallText,
    toTop: toTop,
    focused: focused,
    matches: matches,
    focusPrepare: focusPrepare,
    focusCheck: focusCheck,
    unreached: unreached,
    hoverRevealRules: hoverRevealRules
  };
}());
