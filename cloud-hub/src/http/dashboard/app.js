// The fleet dashboard: impact figures and a daily chart, the edges table
// (stale and fenced edges stand out), a map of cells drawn as SVG from
// their S2 outlines (no map tiles), and the trouble list; English and
// Bahasa Indonesia. It polls the fleet API every few seconds with
// `cache: 'no-cache'`, so the browser revalidates with the ETag it holds
// and an unchanged answer costs a 304. Signed in by an HttpOnly session
// cookie the hub sets at sign-in (script never sees it); the CSRF token it
// hands back goes with sign-out. No inline script (the CSP forbids it);
// text is set with textContent only.
(function () {
  'use strict';

  var TEXT = {
    en: {
      title: 'Food saved across the fleet',
      skip: 'Skip to the figures',
      sign_out: 'Sign out',
      unreachable: 'The hub cannot be reached. The figures below may be out of date.',
      sign_in_title: 'Sign in',
      sign_in_label: "Login code from the hub's operator, or a hub token",
      sign_in_button: 'Sign in',
      impact_title: 'Food delivered',
      today: 'Today',
      week: 'Last 7 days',
      all_time: 'All time',
      kg: 'kg',
      meals: 'meals',
      co2e: 'kg CO2e avoided',
      chart_title: 'Kilograms per day, last 30 days (UTC days)',
      chart_label: 'Kilograms delivered per day',
      fleet_title: 'Edges',
      col_edge: 'Edge',
      col_state: 'State',
      col_cells: 'Cells',
      col_epoch: 'Lease epoch',
      col_heard: 'Last heard',
      col_backlog: 'Backlog',
      col_lag: 'Lag (s)',
      col_today: 'Today (kg)',
      no_edges: 'No edge has connected yet.',
      state_ok: 'Healthy',
      state_stale: 'Stale: not heard from',
      state_fenced: 'Fenced: wrote without the lease',
      never: 'never',
      map_title: 'Cells, coloured by kilograms delivered today',
      map_label: 'Map of the cells the edges hold',
      map_legend: 'Darker green: more food delivered today. Grey outline: no lease held.',
      map_empty: 'No cells are leased yet.',
      trouble_title: 'Trouble',
      trouble_surplus: 'Food about to be wasted',
      trouble_fallback: 'Offers sent to fallback recipients (last day)',
      trouble_unanswered: 'Recipients who let offers time out (last week)',
      none: 'Nothing.',
      dead_lettered: 'dead-lettered: nobody could take it',
      expiring: 'expires',
      timed_out: 'offers timed out',
      erased: '(erased)',
      updated: 'Updated',
      signed_in_as: 'Signed in as',
      co2e_source: 'CO2e factor',
      err_code: 'That code is unknown, used or expired. Ask for a new one.',
      err_token: 'That token was refused: ',
      err_malformed: 'A login code is 12 letters and digits, like 7KQ2-MXW9-PA3D.',
      err_limited: 'Too many tries. Wait a minute and try again.',
      err_insecure: 'Sign in over the hub’s HTTPS address.',
      err_expired: 'Your session has ended. Sign in again.',
      err_other: 'Sign-in failed: ',
      food: { prepared_meals: 'Prepared meals', bakery: 'Bakery', produce: 'Fruit and vegetables', dairy: 'Dairy', meat_fish: 'Meat and fish', dry_goods: 'Dry goods', frozen: 'Frozen food' }
    },
    id: {
      title: 'Makanan yang diselamatkan seluruh jaringan',
      skip: 'Langsung ke angka',
      sign_out: 'Keluar',
      unreachable: 'Hub tidak dapat dijangkau. Angka di bawah mungkin sudah usang.',
      sign_in_title: 'Masuk',
      sign_in_label: 'Kode masuk dari operator hub, atau token hub',
      sign_in_button: 'Masuk',
      impact_title: 'Makanan yang diantar',
      today: 'Hari ini',
      week: '7 hari terakhir',
      all_time: 'Sepanjang waktu',
      kg: 'kg',
      meals: 'porsi makan',
      co2e: 'kg CO2e dicegah',
      chart_title: 'Kilogram per hari, 30 hari terakhir (hari UTC)',
      chart_label: 'Kilogram yang diantar per hari',
      fleet_title: 'Edge',
      col_edge: 'Edge',
      col_state: 'Keadaan',
      col_cells: 'Sel',
      col_epoch: 'Epoch sewa',
      col_heard: 'Terakhir terdengar',
      col_backlog: 'Antrean',
      col_lag: 'Jeda (dtk)',
      col_today: 'Hari ini (kg)',
      no_edges: 'Belum ada edge yang tersambung.',
      state_ok: 'Sehat',
      state_stale: 'Basi: tidak terdengar',
      state_fenced: 'Dipagari: menulis tanpa sewa',
      never: 'belum pernah',
      map_title: 'Sel, diwarnai menurut kilogram yang diantar hari ini',
      map_label: 'Peta sel yang dipegang edge',
      map_legend: 'Hijau lebih tua: lebih banyak makanan diantar hari ini. Garis abu-abu: tanpa sewa.',
      map_empty: 'Belum ada sel yang disewa.',
      trouble_title: 'Masalah',
      trouble_surplus: 'Makanan yang hampir terbuang',
      trouble_fallback: 'Tawaran ke penerima cadangan (sehari terakhir)',
      trouble_unanswered: 'Penerima yang membiarkan tawaran kedaluwarsa (seminggu terakhir)',
      none: 'Tidak ada.',
      dead_lettered: 'masuk antrean gagal: tidak ada yang bisa menerima',
      expiring: 'kedaluwarsa',
      timed_out: 'tawaran kedaluwarsa',
      erased: '(dihapus)',
      updated: 'Diperbarui',
      signed_in_as: 'Masuk sebagai',
      co2e_source: 'Faktor CO2e',
      err_code: 'Kode itu tidak dikenal, sudah dipakai, atau kedaluwarsa. Minta kode baru.',
      err_token: 'Token itu ditolak: ',
      err_malformed: 'Kode masuk terdiri dari 12 huruf dan angka, seperti 7KQ2-MXW9-PA3D.',
      err_limited: 'Terlalu banyak percobaan. Tunggu satu menit lalu coba lagi.',
      err_insecure: 'Masuklah lewat alamat HTTPS hub.',
      err_expired: 'Sesi Anda telah berakhir. Silakan masuk lagi.',
      err_other: 'Gagal masuk: ',
      food: { prepared_meals: 'Makanan siap saji', bakery: 'Roti dan kue', produce: 'Buah dan sayur', dairy: 'Produk susu', meat_fish: 'Daging dan ikan', dry_goods: 'Bahan kering', frozen: 'Makanan beku' }
    }
  };
  var LOCALE = { en: 'en-GB', id: 'id-ID' };
  var LANG_KEY = 'pahlawan.dashboard.lang';
  var POLL_MS = 5000;

  var lang = 'en';
  try { lang = localStorage.getItem(LANG_KEY) === 'id' ? 'id' : 'en'; } catch (e) { /* private mode */ }
  var session = null;
  var data = { impact: null, daily: null, edges: null, cells: null, trouble: null };
  var timer = null;

  function $(id) { return document.getElementById(id); }
  function t(key) { return TEXT[lang][key]; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function num(x, digits) {
    return new Intl.NumberFormat(LOCALE[lang], { maximumFractionDigits: digits === undefined ? 1 : digits }).format(x);
  }
  function when(iso) {
    if (!iso) { return t('never'); }
    return new Intl.DateTimeFormat(LOCALE[lang], { dateStyle: 'medium', timeStyle: 'medium' }).format(new Date(iso));
  }
  function dayLabel(day) {
    return new Intl.DateTimeFormat(LOCALE[lang], { day: 'numeric', month: 'short', timeZone: 'UTC' })
      .format(new Date(day + 'T00:00:00Z'));
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  // --- language ---------------------------------------------------------
  function applyLanguage() {
    document.documentElement.lang = lang;
    document.querySelectorAll('[data-t]').forEach(function (n) { n.textContent = t(n.getAttribute('data-t')); });
    ['en', 'id'].forEach(function (l) { $('lang-' + l).setAttribute('aria-pressed', String(l === lang)); });
    showWho();
    render();
  }
  function setLanguage(l) {
    lang = l;
    try { localStorage.setItem(LANG_KEY, l); } catch (e) { /* private mode */ }
    applyLanguage();
  }

  // --- session ----------------------------------------------------------
  function showWho() {
    $('who').textContent = session ? t('signed_in_as') + ' ' + session.sub + ' (' + session.role + ')' : '';
  }
  function showSignIn(message) {
    session = null;
    if (timer) { clearTimeout(timer); timer = null; }
    $('board').hidden = true;
    $('sign-out').hidden = true;
    $('sign-in').hidden = false;
    $('sign-in-error').textContent = message || '';
    showWho();
  }
  function showBoard(info) {
    session = info;
    $('sign-in').hidden = true;
    $('board').hidden = false;
    $('sign-out').hidden = false;
    showWho();
    poll();
  }
  function signInError(status, body) {
    var code = body && body.error ? body.error.code : '';
    if (code === 'invalid_code') { return t('err_code'); }
    if (code === 'malformed_code') { return t('err_malformed'); }
    if (status === 429) { return t('err_limited'); }
    if (code === 'insecure_transport') { return t('err_insecure'); }
    if (status === 401) { return t('err_token') + (body && body.error ? body.error.message : ''); }
    return t('err_other') + (body && body.error ? body.error.message : String(status));
  }
  function signIn(ev) {
    ev.preventDefault();
    var secret = $('sign-in-secret').value.trim();
    // A JWT has two dots; a login code has none.
    var body = secret.split('.').length === 3 ? { token: secret } : { code: secret };
    $('sign-in-button').disabled = true;
    fetch('/dashboard/session', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (b) {
        if (r.status === 201) { $('sign-in-secret').value = ''; showBoard(b); } else { $('sign-in-error').textContent = signInError(r.status, b); }
      });
    }).catch(function () {
      $('sign-in-error').textContent = t('unreachable');
    }).then(function () { $('sign-in-button').disabled = false; });
  }
  function signOut() {
    var csrf = session ? session.csrf_token : '';
    fetch('/dashboard/session', { method: 'DELETE', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf } })
      .catch(function () { return null; })
      .then(function () { showSignIn(''); $('sign-in-secret').focus(); });
  }

  // --- polling ----------------------------------------------------------
  var ROUTES = {
    impact: '/api/v1/fleet/impact',
    daily: '/api/v1/fleet/impact/daily?days=30',
    edges: '/api/v1/fleet/edges',
    cells: '/api/v1/fleet/cells',
    trouble: '/api/v1/fleet/trouble?limit=20'
  };
  function fetchOne(key) {
    return fetch(ROUTES[key], { credentials: 'same-origin', cache: 'no-cache' }).then(function (r) {
      if (r.status === 401) { throw new Error('signed out'); }
      if (!r.ok) { throw new Error('status ' + r.status); }
      return r.json().then(function (b) { data[key] = b; });
    });
  }
  function poll() {
    if (timer) { clearTimeout(timer); timer = null; }
    Promise.all(Object.keys(ROUTES).map(fetchOne)).then(function () {
      $('unreachable').hidden = true;
      $('updated').textContent = t('updated') + ' ' + when(new Date().toISOString());
      render();
      timer = setTimeout(poll, POLL_MS);
    }).catch(function (e) {
      if (e && e.message === 'signed out') { showSignIn(t('err_expired')); return; }
      $('unreachable').hidden = false;
      timer = setTimeout(poll, POLL_MS);
    });
  }

  // --- rendering ----------------------------------------------------------
  function render() {
    if (!session) { return; }
    renderImpact();
    renderChart();
    renderFleet();
    renderMap();
    renderTrouble();
  }
  function renderImpact() {
    var i = data.impact;
    if (!i) { return; }
    [['today', i.total.today], ['week', i.total.week], ['all', i.total.all_time]].forEach(function (p) {
      $(p[0] + '-kg').textContent = num(p[1].delivered_kg, 1);
      $(p[0] + '-meals').textContent = num(p[1].meals, 0);
      $(p[0] + '-co2e').textContent = num(p[1].co2e_kg, 1);
    });
    $('co2e-source').textContent = t('co2e_source') + ': ' + num(i.co2e_kg_per_kg, 2) + ' kg/kg — ' + i.co2e_source;
  }
  function renderChart() {
    var d = data.daily;
    var box = $('chart');
    if (!d) { return; }
    clear(box);
    var W = 720, H = 220, L = 48, B = 28, days = d.days;
    var max = days.reduce(function (m, x) { return Math.max(m, x.delivered_kg); }, 0) || 1;
    var chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': 'chart-title' });
    var title = svg('title', { id: 'chart-title' });
    title.textContent = t('chart_label');
    chart.appendChild(title);
    chart.appendChild(svg('line', { x1: L, y1: H - B, x2: W, y2: H - B, class: 'axis' }));
    var top = svg('text', { x: L - 6, y: 14, class: 'tick', 'text-anchor': 'end' });
    top.textContent = num(max, 1);
    chart.appendChild(top);
    var zero = svg('text', { x: L - 6, y: H - B, class: 'tick', 'text-anchor': 'end' });
    zero.textContent = '0';
    chart.appendChild(zero);
    var step = (W - L) / Math.max(days.length, 1);
    days.forEach(function (x, k) {
      var h = (H - B - 10) * x.delivered_kg / max;
      var bar = svg('rect', { x: L + k * step + 2, y: H - B - h, width: Math.max(step - 4, 1), height: h, class: 'bar' });
      var tip = svg('title', {});
      tip.textContent = dayLabel(x.day) + ': ' + num(x.delivered_kg, 1) + ' ' + t('kg');
      bar.appendChild(tip);
      chart.appendChild(bar);
      if (k % 5 === 0 || k === days.length - 1) {
        var label = svg('text', { x: L + k * step + step / 2, y: H - 8, class: 'tick', 'text-anchor': 'middle' });
        label.textContent = dayLabel(x.day);
        chart.appendChild(label);
      }
    });
    box.appendChild(chart);
  }
  function todayKgByEdge() {
    var m = {};
    (data.impact ? data.impact.edges : []).forEach(function (e) {
      m[e.edge_id] = (m[e.edge_id] || 0) + e.today.delivered_kg;
    });
    return m;
  }
  function renderFleet() {
    var e = data.edges;
    if (!e) { return; }
    var body = $('fleet-rows');
    clear(body);
    var kg = todayKgByEdge();
    e.items.forEach(function (x) {
      var tr = el('tr', x.fenced ? 'fenced' : (x.stale ? 'stale' : 'ok'));
      tr.setAttribute('data-edge', x.edge_id);
      var state = x.fenced ? t('state_fenced') : (x.stale ? t('state_stale') : t('state_ok'));
      var cells = [x.edge_id, state, num(x.cells.length, 0), num(x.lease_epoch, 0), when(x.last_heard),
        x.backlog_at_hello === null ? '–' : num(x.backlog_at_hello, 0),
        x.replication_lag_secs === null ? '–' : num(x.replication_lag_secs, 1),
        num(kg[x.edge_id] || 0, 1)];
      cells.forEach(function (c, k) {
        var td = el(k === 0 ? 'th' : 'td', k === 1 ? 'state' : '', c);
        if (k === 0) { td.setAttribute('scope', 'row'); }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    $('no-edges').hidden = e.items.length > 0;
    $('fleet').hidden = e.items.length === 0;
  }
  // Five greens, light to dark; text never sits on them.
  var SHADES = ['#e8f5e9', '#a5d6a7', '#66bb6a', '#2e7d32', '#1b5e20'];
  function renderMap() {
    var c = data.cells;
    var box = $('map');
    if (!c) { return; }
    clear(box);
    if (c.items.length === 0) { box.appendChild(el('p', 'empty', t('map_empty'))); $('map-legend').textContent = ''; return; }
    var lat0 = 90, lat1 = -90, lon0 = 180, lon1 = -180;
    c.items.forEach(function (x) {
      x.outline.forEach(function (p) {
        lat0 = Math.min(lat0, p[0]); lat1 = Math.max(lat1, p[0]);
        lon0 = Math.min(lon0, p[1]); lon1 = Math.max(lon1, p[1]);
      });
    });
    // Equirectangular, longitudes shrunk by the cosine of the middle latitude.
    var k = Math.cos((lat0 + lat1) / 2 * Math.PI / 180);
    var w = Math.max((lon1 - lon0) * k, 1e-6), h = Math.max(lat1 - lat0, 1e-6);
    var W = 720, H = Math.max(160, Math.min(520, W * h / w)), pad = 8;
    var s = Math.min((W - 2 * pad) / w, (H - 2 * pad) / h);
    var max = c.items.reduce(function (m, x) { return Math.max(m, x.delivered_today_kg); }, 0);
    var map = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': 'map-svg-title' });
    var title = svg('title', { id: 'map-svg-title' });
    title.textContent = t('map_label');
    map.appendChild(title);
    c.items.forEach(function (x) {
      var pts = x.outline.map(function (p) {
        return (pad + (p[1] - lon0) * k * s).toFixed(1) + ',' + (pad + (lat1 - p[0]) * s).toFixed(1);
      }).join(' ');
      var shade = max > 0 ? SHADES[Math.min(4, Math.floor(4 * x.delivered_today_kg / max + (x.delivered_today_kg > 0 ? 0.999 : 0)))] : SHADES[0];
      var poly = svg('polygon', { points: pts, fill: shade, class: x.leased ? 'cell leased' : 'cell lapsed', 'data-cell': x.cell });
      var tip = svg('title', {});
      tip.textContent = x.cell + ' · ' + (x.edge_id || '–') + ' · ' + num(x.delivered_today_kg, 1) + ' ' + t('kg');
      poly.appendChild(tip);
      map.appendChild(poly);
    });
    box.appendChild(map);
    $('map-legend').textContent = t('map_legend');
  }
  function foodName(f) { return (TEXT[lang].food[f]) || f; }
  function fillList(id, items, line) {
    var ul = $(id);
    clear(ul);
    items.forEach(function (x) { var li = el('li', '', line(x)); ul.appendChild(li); });
    $('no-' + id).hidden = items.length > 0;
  }
  function renderTrouble() {
    var tr = data.trouble;
    if (!tr) { return; }
    fillList('trouble-surplus', tr.surplus, function (x) {
      var what = num(x.quantity_kg, 1) + ' ' + t('kg') + ' ' + foodName(x.food_type) + ' · ' + x.edge_id + ' · ';
      return what + (x.status === 'dead_lettered' ? t('dead_lettered') : t('expiring') + ' ' + when(x.expires_at));
    });
    fillList('trouble-fallback', tr.fallback_alerts, function (x) {
      return when(x.made_at) + ' · ' + x.edge_id + ' · ' + x.outcome;
    });
    fillList('trouble-unanswered', tr.unanswered, function (x) {
      return (x.name || t('erased')) + ' · ' + num(x.timed_out, 0) + ' ' + t('timed_out');
    });
  }

  // --- start ------------------------------------------------------------
  document.addEventListener('DOMContentLoaded', function () {
    $('lang-en').addEventListener('click', function () { setLanguage('en'); });
    $('lang-id').addEventListener('click', function () { setLanguage('id'); });
    $('sign-in-form').addEventListener('submit', signIn);
    $('sign-out').addEventListener('click', signOut);
    applyLanguage();
    fetch('/dashboard/session', { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      return r.json().then(function (b) { if (r.ok) { showBoard(b); } else { showSignIn(''); } });
    }).catch(function () { showSignIn(t('unreachable')); });
  });
}());
