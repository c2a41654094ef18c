// The food bank's kiosk page: live offers over Server-Sent Events, one tap
// to accept or decline, pick-up and delivery, today's figures, English and
// Bahasa Indonesia. Taps are queued in localStorage and sent with an
// Idempotency-Key, so a tap made while the edge is unreachable is applied
// once when it is back. Plain ES2017 (a 2018 Android tablet's browser), no
// framework, no inline script (the page's CSP forbids it), text set with
// textContent only.
(function () {
  'use strict';

  var TEXT = {
    en: {
      title: 'Food offers',
      offline: 'Offline: the edge cannot be reached. Taps are kept and sent when it is back.',
      pair_title: 'Pair this kiosk',
      pair_label: "Pairing code from the edge's operator",
      pair_button: 'Pair',
      kg_today: 'kg received today',
      meals_today: 'meals',
      offers_title: 'Offers for you',
      no_offers: 'No offers right now. New ones appear here at once.',
      claims_title: "Today's food",
      no_claims: 'Nothing claimed today yet.',
      accept: 'Accept',
      decline: 'Decline',
      pickup: 'Picked up',
      deliver: 'Delivered',
      delivered_kg: 'kg delivered',
      left: 'left to accept',
      expired: 'Offer expired',
      away: 'away',
      queued: 'Waiting to send…',
      lost_race: 'Someone else took this food first. It is no longer yours to collect.',
      gone: 'This food has expired.',
      unpaired: 'This kiosk is not paired any more. Ask for a new code.',
      refused: 'The edge refused this: ',
      status_claimed: 'Claimed: collect it',
      status_picked_up: 'Picked up: deliver it',
      status_delivered: 'Delivered',
      status_expired: 'Expired',
      pickup_by: 'collect before',
      code_unknown: 'That code is not right. Check it, or ask for a new one.',
      code_expired: 'That code has expired. Ask for a new one.',
      code_used: 'That code was used already. Ask for a new one.',
      code_invalid: 'A code is 8 letters and digits, like K7QM-2XPD.',
      code_limited: 'Too many tries. Wait a minute and try again.',
      code_insecure: 'Pairing needs the edge’s secure (HTTPS) address.',
      notify_on: 'Notify me on this device',
      notify_off: 'Stop notifying this device',
      notify_working: 'Setting up notifications…',
      notify_enabled: 'This device is notified of new offers, even with the page closed.',
      notify_disabled: 'This device is no longer notified.',
      notify_denied: 'Notifications are blocked for this page in the browser’s settings.',
      notify_failed: 'Notifications could not be set up: ',
      food: { prepared_meals: 'Prepared meals', bakery: 'Bakery', produce: 'Fruit and vegetables', dairy: 'Dairy', meat_fish: 'Meat and fish', dry_goods: 'Dry goods', frozen: 'Frozen food' }
    },
    id: {
      title: 'Tawaran makanan',
      offline: 'Luring: edge tidak dapat dijangkau. Ketukan disimpan dan dikirim saat tersambung lagi.',
      pair_title: 'Pasangkan kios ini',
      pair_label: 'Kode pemasangan dari operator edge',
      pair_button: 'Pasangkan',
      kg_today: 'kg diterima hari ini',
      meals_today: 'porsi makan',
      offers_title: 'Tawaran untuk Anda',
      no_offers: 'Belum ada tawaran. Tawaran baru langsung muncul di sini.',
      claims_title: 'Makanan hari ini',
      no_claims: 'Belum ada yang diklaim hari ini.',
      accept: 'Terima',
      decline: 'Tolak',
      pickup: 'Sudah diambil',
      deliver: 'Sudah diantar',
      delivered_kg: 'kg diantar',
      left: 'tersisa untuk menerima',
      expired: 'Tawaran kedaluwarsa',
      away: 'jaraknya',
      queued: 'Menunggu dikirim…',
      lost_race: 'Penerima lain mengambil makanan ini lebih dulu. Makanan ini bukan untuk Anda ambil lagi.',
      gone: 'Makanan ini sudah kedaluwarsa.',
      unpaired: 'Kios ini tidak lagi dipasangkan. Minta kode baru.',
      refused: 'Edge menolak ini: ',
      status_claimed: 'Diklaim: ambil sekarang',
      status_picked_up: 'Sudah diambil: antarkan',
      status_delivered: 'Sudah diantar',
      status_expired: 'Kedaluwarsa',
      pickup_by: 'ambil sebelum',
      code_unknown: 'Kode itu salah. Periksa lagi, atau minta kode baru.',
      code_expired: 'Kode itu sudah kedaluwarsa. Minta kode baru.',
      code_used: 'Kode itu sudah dipakai. Minta kode baru.',
      code_invalid: 'Kode terdiri dari 8 huruf dan angka, seperti K7QM-2XPD.',
      code_limited: 'Terlalu banyak percobaan. Tunggu satu menit lalu coba lagi.',
      code_insecure: 'Pemasangan memerlukan alamat aman (HTTPS) edge.',
      notify_on: 'Beri tahu saya di perangkat ini',
      notify_off: 'Berhenti memberi tahu perangkat ini',
      notify_working: 'Menyiapkan pemberitahuan…',
      notify_enabled: 'Perangkat ini diberi tahu tentang tawaran baru, meski halaman ditutup.',
      notify_disabled: 'Perangkat ini tidak lagi diberi tahu.',
      notify_denied: 'Pemberitahuan diblokir untuk halaman ini di pengaturan peramban.',
      notify_failed: 'Pemberitahuan tidak dapat disiapkan: ',
      food: { prepared_meals: 'Makanan siap saji', bakery: 'Roti dan kue', produce: 'Buah dan sayur', dairy: 'Produk susu', meat_fish: 'Daging dan ikan', dry_goods: 'Bahan kering', frozen: 'Makanan beku' }
    }
  };
  var LOCALE = { en: 'en-GB', id: 'id-ID' };
  var QUEUE_KEY = 'pahlawan.kiosk.queue';
  var PUSH_KEY = 'pahlawan.kiosk.push';
  var LANG_KEY = 'pahlawan.kiosk.lang';
  var MAX_QUEUE = 200;
  var REFRESH_MS = 60000;
  var RETRY_MS = 3000;

  var state = {
    lang: 'en', session: null, skewMs: 0, offers: {}, claims: [], providers: {},
    online: true, source: null, flushing: false, message: null,
    push: { key: null, registration: null, channel: null, busy: false, status: null }
  };

  function $(id) { return document.getElementById(id); }
  function t(key) { return TEXT[state.lang][key]; }
  function edgeNow() { return Date.now() + state.skewMs; }

  // --- language -----------------------------------------------------------
  function setLang(lang) {
    state.lang = TEXT[lang] ? lang : 'en';
    try { localStorage.setItem(LANG_KEY, state.lang); } catch (e) { /* private mode */ }
    document.documentElement.lang = state.lang;
    var nodes = document.querySelectorAll('[data-t]');
    for (var i = 0; i < nodes.length; i++) { nodes[i].textContent = t(nodes[i].getAttribute('data-t')); }
    $('lang-en').setAttribute('aria-pressed', String(state.lang === 'en'));
    $('lang-id').setAttribute('aria-pressed', String(state.lang === 'id'));
    drawMessage();
    drawNotify();
    render();
  }

  function fmtNumber(n, digits) {
    return new Intl.NumberFormat(LOCALE[state.lang], { maximumFractionDigits: digits }).format(n);
  }
  // Times in the edge's zone: shift by its offset, then format as UTC.
  function fmtTime(iso) {
    var offset = state.session ? state.session.utc_offset_minutes : 0;
    var d = new Date(Date.parse(iso) + offset * 60000);
    return new Intl.DateTimeFormat(LOCALE[state.lang], { hour: '2-digit', minute: '2-digit', timeZone: 'UTC' }).format(d);
  }
  function localDay(ms) {
    var offset = state.session ? state.session.utc_offset_minutes : 0;
    return Math.floor((ms + offset * 60000) / 86400000);
  }
  function fmtLeft(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var m = Math.floor(s / 60);
    var r = s % 60;
    return m + ':' + (r < 10 ? '0' : '') + r;
  }
  function distanceKm(lat1, lon1, lat2, lon2) {
    var rad = Math.PI / 180;
    var dlat = (lat2 - lat1) * rad;
    var dlon = (lon2 - lon1) * rad;
    var a = Math.sin(dlat / 2) * Math.sin(dlat / 2) +
      Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dlon / 2) * Math.sin(dlon / 2);
    return 6371.0088 * 2 * Math.atan2(Math.sqrt(a), Math.sqrt(1 - a));
  }

  // --- talking to the edge ------------------------------------------------
  function api(method, path, body, key) {
    var headers = { 'Accept': 'application/json' };
    if (body !== undefined) { headers['Content-Type'] = 'application/json'; }
    if (key) { headers['Idempotency-Key'] = key; }
    if (state.session && state.session.csrf_token) { headers['X-CSRF-Token'] = state.session.csrf_token; }
    return fetch('/api/v1' + path, {
      method: method, headers: headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (json) {
        return { status: resp.status, json: json };
      });
    });
  }

  function setOnline(online) {
    state.online = online;
    $('offline').hidden = online;
  }

  // The message shown, by its text's key (and what follows it), so a
  // change of language changes it too.
  function showMessage(key, extra) {
    state.message = key ? { key: key, extra: extra || '' } : null;
    drawMessage();
  }
  function drawMessage() {
    var m = $('message');
    m.textContent = state.message ? t(state.message.key) + state.message.extra : '';
    m.hidden = !state.message;
  }

  function start() {
    api('GET', '/kiosk/session').then(function (r) {
      if (r.status === 401 || r.status === 403) { showPairing(); return; }
      if (r.status !== 200) { throw new Error('session ' + r.status); }
      state.session = r.json;
      state.skewMs = Date.parse(r.json.now) - Date.now();
      $('pair').hidden = true;
      $('board').hidden = false;
      $('who').textContent = r.json.name;
      setOnline(true);
      connect();
      refresh();
      flush();
      setupNotify();
    }).catch(function () {
      setOnline(false);
      setTimeout(start, RETRY_MS);
    });
  }

  function showPairing() {
    state.session = null;
    if (state.source) { state.source.close(); state.source = null; }
    $('board').hidden = true;
    $('pair').hidden = false;
    setOnline(true);
    // The QR code of `pahlawan kiosk pair` links to /kiosk#code=…: the
    // fragment never leaves the tablet; fill it in and drop it from the URL.
    var m = /[#&]code=([A-Za-z0-9-]{1,32})/.exec(window.location.hash);
    if (m) {
      $('pair-code').value = m[1];
      history.replaceState(null, '', window.location.pathname);
    }
  }

  function pair(ev) {
    ev.preventDefault();
    var errors = {
      pairing_code_unknown: 'code_unknown', pairing_code_expired: 'code_expired',
      pairing_code_used: 'code_used', invalid_code: 'code_invalid',
      pairing_rate_limited: 'code_limited', insecure_transport: 'code_insecure'
    };
    $('pair-error').textContent = '';
    api('POST', '/kiosk/pair', { code: $('pair-code').value }).then(function (r) {
      if (r.status === 201) { $('pair-code').value = ''; start(); return; }
      var code = r.json && r.json.error ? r.json.error.code : '';
      $('pair-error').textContent = errors[code] ? t(errors[code]) : t('refused') + (code || r.status);
    }).catch(function () { setOnline(false); });
  }

  // Live offers: pending ones first on every (re)connection, then new ones.
  function connect() {
    if (!state.session) { return; }
    if (state.source) { state.source.close(); }
    var src = new EventSource('/api/v1/recipients/' + state.session.recipient_id + '/offers/stream');
    state.source = src;
    src.addEventListener('open', function () { setOnline(true); flush(); refresh(); });
    src.addEventListener('offer', function (ev) {
      try { addOffer(JSON.parse(ev.data)); } catch (e) { /* not JSON: ignore */ }
    });
    src.addEventListener('resync', function () { refresh(); });
    src.addEventListener('error', function () {
      setOnline(false);
      if (src.readyState === 2) {
        // Closed for good (an error status): reconnect ourselves.
        setTimeout(function () { if (state.source === src) { recheck(); } }, RETRY_MS);
      }
    });
  }

  // After the stream closed for good: the session decides (unpaired → pair).
  function recheck() {
    api('GET', '/kiosk/session').then(function (r) {
      if (r.status === 401) { showPairing(); return; }
      connect();
    }).catch(function () { setTimeout(recheck, RETRY_MS); });
  }

  function addOffer(s) {
    if (!s.offer || s.offer.recipient_id !== state.session.recipient_id) { return; }
    state.offers[s.id] = s;
    provider(s.provider_id);
    render();
  }

  function provider(id) {
    if (state.providers[id]) { return; }
    state.providers[id] = { name: '', address: '' };
    api('GET', '/providers/' + id + '/card').then(function (r) {
      if (r.status === 200) { state.providers[id] = r.json; render(); } else { delete state.providers[id]; }
    }).catch(function () { delete state.providers[id]; });
  }

  function refresh() {
    if (!state.session) { return; }
    var me = state.session.recipient_id;
    api('GET', '/recipients/' + me + '/offers').then(function (r) {
      if (r.status === 401) { showPairing(); return; }
      if (r.status !== 200) { return; }
      var next = {};
      r.json.items.forEach(function (s) { next[s.id] = s; provider(s.provider_id); });
      state.offers = next;
      render();
    }).catch(function () { setOnline(false); });
    api('GET', '/recipients/' + me + '/claims').then(function (r) {
      if (r.status !== 200) { return; }
      state.claims = r.json.items;
      r.json.items.forEach(function (s) { provider(s.provider_id); });
      render();
    }).catch(function () { setOnline(false); });
  }

  // --- the tap queue ------------------------------------------------------
  function loadQueue() {
    try { return JSON.parse(localStorage.getItem(QUEUE_KEY) || '[]'); } catch (e) { return []; }
  }
  function saveQueue(q) {
    try { localStorage.setItem(QUEUE_KEY, JSON.stringify(q)); } catch (e) { /* full: kept in memory */ }
  }
  function newKey() {
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    return 'kiosk-' + Array.prototype.map.call(b, function (x) { return (x < 16 ? '0' : '') + x.toString(16); }).join('');
  }
  function queued(id) {
    return loadQueue().some(function (a) { return a.surplus_id === id; });
  }

  function tap(kind, s, extra) {
    var q = loadQueue();
    if (q.length >= MAX_QUEUE || queued(s.id)) { return; }
    var body = { recipient_id: state.session.recipient_id };
    if (extra) { Object.keys(extra).forEach(function (k) { body[k] = extra[k]; }); }
    q.push({ key: newKey(), kind: kind, surplus_id: s.id, body: body });
    saveQueue(q);
    render();
    flush();
  }

  var PATHS = {
    accept: function (id) { return '/offers/' + id + '/accept'; },
    decline: function (id) { return '/offers/' + id + '/decline'; },
    pickup: function (id) { return '/surplus/' + id + '/pickup'; },
    deliver: function (id) { return '/surplus/' + id + '/deliver'; }
  };

  // Sends queued taps in order; stops at the first that cannot reach the
  // edge (or is told to wait) and tries again later. Each keeps its key.
  function flush() {
    if (state.flushing || !state.session) { return; }
    var q = loadQueue();
    if (!q.length) { return; }
    state.flushing = true;
    var a = q[0];
    api('POST', PATHS[a.kind](a.surplus_id), a.body, a.key).then(function (r) {
      state.flushing = false;
      if (r.status === 429 || r.status === 503) { setTimeout(flush, RETRY_MS); return; }
      saveQueue(loadQueue().filter(function (x) { return x.key !== a.key; }));
      answered(a, r);
      flush();
    }).catch(function () {
      state.flushing = false;
      setOnline(false);
      setTimeout(flush, RETRY_MS);
    });
  }

  function answered(a, r) {
    var code = r.json && r.json.error ? r.json.error.code : '';
    if (r.status === 200) {
      showMessage(null);
    } else if (r.status === 409 && (a.kind === 'accept' || a.kind === 'decline')) {
      showMessage('lost_race');
    } else if (r.status === 410) {
      showMessage('gone');
    } else if (r.status === 401) {
      showMessage('unpaired');
      showPairing();
    } else {
      showMessage('refused', String(code || r.status));
    }
    delete state.offers[a.surplus_id];
    refresh();
  }

  // --- notifications (Web Push) --------------------------------------------
  // "Notify me": a service worker, a push subscription made with the
  // edge's key, registered as this recipient's channel; the edge then
  // sends each offer to the browser's push service, encrypted for it. The
  // channel this device registered is remembered, to withdraw it.
  function loadPush() {
    try { return JSON.parse(localStorage.getItem(PUSH_KEY) || 'null'); } catch (e) { return null; }
  }
  function savePush(v) {
    try { if (v) { localStorage.setItem(PUSH_KEY, JSON.stringify(v)); } else { localStorage.removeItem(PUSH_KEY); } } catch (e) { /* kept in memory */ }
  }
  function pushSupported() {
    return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window && window.isSecureContext;
  }
  function setupNotify() {
    if (!pushSupported() || state.push.key) { drawNotify(); return; }
    api('GET', '/notify/web-push').then(function (r) {
      if (r.status !== 200) { return null; }
      state.push.key = r.json.application_server_key;
      return navigator.serviceWorker.register('/kiosk/sw.js', { scope: '/kiosk/' });
    }).then(function (reg) {
      if (!reg) { return null; }
      state.push.registration = reg;
      return reg.pushManager.getSubscription();
    }).then(function (sub) {
      var saved = loadPush();
      state.push.channel = sub && saved && saved.endpoint === sub.endpoint ? saved.channel : null;
      drawNotify();
    }).catch(function () { drawNotify(); });
  }
  function keyBytes(b64) {
    var s = atob(b64.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((b64.length + 3) % 4));
    var out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) { out[i] = s.charCodeAt(i); }
    return out;
  }
  function notifyOn() {
    var reg = state.push.registration;
    pushBusy('notify_working');
    Notification.requestPermission().then(function (perm) {
      if (perm !== 'granted') { throw { key: 'notify_denied' }; }
      return reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(state.push.key) });
    }).then(function (sub) {
      var j = sub.toJSON();
      var body = { kind: 'web_push', endpoint: j.endpoint, keys: { p256dh: j.keys.p256dh, auth: j.keys.auth } };
      return api('POST', '/recipients/' + state.session.recipient_id + '/channels', body).then(function (r) {
        if (r.status !== 201) { throw { key: 'notify_failed', extra: r.json && r.json.error ? r.json.error.code : String(r.status) }; }
        state.push.channel = r.json.id;
        savePush({ endpoint: j.endpoint, channel: r.json.id });
        pushDone('notify_enabled');
      });
    }).catch(function (e) {
      pushDone(e && e.key ? e.key : 'notify_failed', e && e.key ? e.extra : String(e && e.name || e));
    });
  }
  function notifyOff() {
    var channel = state.push.channel;
    pushBusy('notify_working');
    api('DELETE', '/recipients/' + state.session.recipient_id + '/channels/' + channel).then(function (r) {
      if (r.status !== 204 && r.status !== 404) { throw { key: 'notify_failed', extra: String(r.status) }; }
      state.push.channel = null;
      savePush(null);
      return state.push.registration.pushManager.getSubscription();
    }).then(function (sub) {
      if (sub) { sub.unsubscribe(); }
      pushDone('notify_disabled');
    }).catch(function (e) {
      pushDone('notify_failed', e && e.key ? e.extra : String(e && e.name || e));
    });
  }
  function pushBusy(key) { state.push.busy = true; state.push.status = { key: key, extra: '' }; drawNotify(); }
  function pushDone(key, extra) { state.push.busy = false; state.push.status = { key: key, extra: extra || '' }; drawNotify(); }
  function drawNotify() {
    var box = $('notify');
    box.hidden = !state.push.registration;
    var b = $('notify-button');
    var key = state.push.channel ? 'notify_off' : 'notify_on';
    b.setAttribute('data-t', key);
    b.textContent = t(key);
    b.disabled = state.push.busy;
    var st = state.push.status;
    $('notify-status').textContent = st ? t(st.key) + (st.extra || '') : '';
  }

  // --- drawing ------------------------------------------------------------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function describe(li, s) {
    var p = state.providers[s.provider_id] || {};
    var food = t('food')[s.food_type] || s.food_type;
    li.appendChild(el('p', 'what', fmtNumber(s.quantity_kg, 1) + ' kg · ' + food));
    li.appendChild(el('p', 'where', (p.name || '…') + (p.address ? ' — ' + p.address : '')));
    var km = distanceKm(state.session.lat, state.session.lon, s.lat, s.lon);
    var facts = fmtNumber(km, 1) + ' km ' + t('away') + ' · ' + t('pickup_by') + ' ' + fmtTime(s.expires_at);
    if (s.description) { facts += ' · ' + s.description; }
    li.appendChild(el('p', 'facts', facts));
  }

  function button(cls, label, onTap) {
    var b = el('button', cls, label);
    b.type = 'button';
    b.addEventListener('click', onTap);
    return b;
  }

  // What a card shows, but for its countdown: a card is drawn anew only when
  // this changes, so the button under a finger stays the same element (a
  // tap that straddled a redraw would be lost) and a typed figure stays.
  function signature(s, extra) {
    var p = state.providers[s.provider_id] || {};
    return JSON.stringify([state.lang, s.version, s.status, s.delivered_kg, queued(s.id), p.name, p.address, extra]);
  }

  // The offer's time left, and whether it may still be answered.
  function offerTime(s) {
    var leftMs = Date.parse(s.offer.expires_at) - edgeNow();
    var live = leftMs > 0 && Date.parse(s.expires_at) > edgeNow();
    return { leftMs: leftMs, live: live, urgent: live && leftMs < 60000 };
  }

  function leftText(time) {
    return time.live ? fmtLeft(time.leftMs) + ' ' + t('left') : t('expired');
  }

  function offerCard(s) {
    var li = el('li', 'card offer');
    li.setAttribute('data-surplus', s.id);
    describe(li, s);
    var time = offerTime(s);
    var live = time.live;
    if (time.urgent) { li.className += ' urgent'; }
    li.appendChild(el('p', 'left', leftText(time)));
    var actions = el('div', 'actions');
    if (queued(s.id)) {
      actions.appendChild(el('span', 'state', t('queued')));
    } else if (live) {
      actions.appendChild(button('accept', t('accept'), function () { tap('accept', s); }));
      actions.appendChild(button('decline', t('decline'), function () { tap('decline', s); }));
    }
    li.appendChild(actions);
    return li;
  }

  function claimCard(s) {
    var li = el('li', 'card claim');
    li.setAttribute('data-surplus', s.id);
    describe(li, s);
    var label = t('status_' + s.status) || s.status;
    if (s.status === 'delivered' && s.delivered_kg !== null) { label += ': ' + fmtNumber(s.delivered_kg, 3) + ' kg'; }
    li.appendChild(el('p', 'state', label));
    var actions = el('div', 'actions');
    if (queued(s.id)) {
      actions.appendChild(el('span', 'state', t('queued')));
    } else if (s.status === 'claimed') {
      actions.appendChild(button('pickup', t('pickup'), function () { tap('pickup', s); }));
    } else if (s.status === 'picked_up') {
      var input = el('input', 'deliver-kg');
      input.type = 'number'; input.min = '0.001'; input.step = '0.001';
      input.value = String(s.quantity_kg);
      input.setAttribute('aria-label', t('delivered_kg'));
      actions.appendChild(input);
      actions.appendChild(el('span', '', t('delivered_kg')));
      actions.appendChild(button('deliver', t('deliver'), function () {
        var kg = parseFloat(input.value);
        if (kg > 0) { tap('deliver', s, { delivered_kg: kg }); }
      }));
    }
    li.appendChild(actions);
    return li;
  }

  // Makes `list` hold `items` ({id, sig, build}) in order, keeping every
  // card whose signature is unchanged and touching the DOM only where it
  // differs.
  function reconcile(list, items) {
    var old = {};
    Array.prototype.forEach.call(list.children, function (li) { old[li.getAttribute('data-surplus')] = li; });
    var wanted = items.map(function (it) {
      var li = old[it.id];
      if (li && li.getAttribute('data-sig') === it.sig) { return li; }
      li = it.build();
      li.setAttribute('data-sig', it.sig);
      return li;
    });
    wanted.forEach(function (li, i) {
      if (list.children[i] !== li) { list.insertBefore(li, list.children[i] || null); }
    });
    while (list.children.length > wanted.length) { list.removeChild(list.lastChild); }
  }

  function render() {
    if (!state.session) { return; }
    var offers = Object.keys(state.offers).map(function (k) { return state.offers[k]; });
    // Most urgent first (the offer that lapses soonest), then newest.
    offers.sort(function (a, b) {
      return Date.parse(a.offer.expires_at) - Date.parse(b.offer.expires_at) ||
        Date.parse(b.posted_at) - Date.parse(a.posted_at);
    });
    var list = $('offers');
    reconcile(list, offers.map(function (s) {
      var time = offerTime(s);
      return { id: s.id, sig: signature(s, [time.live, time.urgent]), build: function () { return offerCard(s); } };
    }));
    // The countdowns move in place.
    offers.forEach(function (s, i) {
      var left = list.children[i].querySelector('.left');
      var text = leftText(offerTime(s));
      if (left && left.textContent !== text) { left.textContent = text; }
    });
    $('no-offers').hidden = offers.length > 0;
    var today = localDay(edgeNow());
    var mine = state.claims.filter(function (s) { return localDay(Date.parse(s.updated_at)) === today || s.status === 'claimed' || s.status === 'picked_up'; });
    reconcile($('claims'), mine.map(function (s) {
      return { id: s.id, sig: signature(s, null), build: function () { return claimCard(s); } };
    }));
    $('no-claims').hidden = mine.length > 0;
    var kg = mine.reduce(function (sum, s) { return sum + (s.status === 'delivered' && s.delivered_kg ? s.delivered_kg : 0); }, 0);
    $('today-kg').textContent = fmtNumber(kg, 1);
    $('today-meals').textContent = fmtNumber(Math.floor(kg * 1000 / state.session.meal_g), 0);
  }

  function tick() {
    // Countdowns move; an offer whose time is over stops being actionable.
    if (state.session && Object.keys(state.offers).length) { render(); }
  }

  document.addEventListener('DOMContentLoaded', function () {
    var saved = null;
    try { saved = localStorage.getItem(LANG_KEY); } catch (e) { /* private mode */ }
    $('lang-en').addEventListener('click', function () { setLang('en'); });
    $('lang-id').addEventListener('click', function () { setLang('id'); });
    $('pair-form').addEventListener('submit', pair);
    $('notify-button').addEventListener('click', function () {
      if (state.push.busy) { return; }
      if (state.push.channel) { notifyOff(); } else { notifyOn(); }
    });
    window.addEventListener('online', flush);
    setLang(saved || (navigator.language && navigator.language.indexOf('id') === 0 ? 'id' : 'en'));
    setInterval(tick, 1000);
    setInterval(refresh, REFRESH_MS);
    setInterval(flush, RETRY_MS);
    start();
  });
}());
