// The kiosk's service worker: it shows an offer the edge pushed while the
// page was closed (the edge encrypts it for this browser; the browser's
// push service delivers it, this worker receives it decrypted), and a tap
// on the notification opens the kiosk page to answer it. A repeat of one
// delivery carries the same id, used as the notification's tag, so it
// replaces the first instead of showing twice.
'use strict';

var TEXT = {
    en: {
      offer: 'Food offer',
      kg: 'kg',
      from: 'from',
      answer_by: 'answer by',
      expired: 'This offer has expired.',
      food: { prepared_meals: 'Prepared meals', bakery: 'Bakery', produce: 'Fruit and vegetables', dairy: 'Dairy', meat_fish: 'Meat and fish', dry_goods: 'Dry goods', frozen: 'Frozen food' }
    },
    id: {
      offer: 'Tawaran makanan',
      kg: 'kg',
      from: 'dari',
      answer_by: 'jawab sebelum',
      expired: 'Tawaran ini sudah kedaluwarsa.',
      food: { prepared_meals: 'Makanan siap saji', bakery: 'Roti dan kue', produce: 'Buah dan sayur', dairy: 'Produk susu', meat_fish: 'Daging dan ikan', dry_goods: 'Bahan kering', frozen: 'Makanan beku' }
    }
};

function lang() {
  var l = (self.navigator && self.navigator.language) || 'en';
  return l.toLowerCase().indexOf('id') === 0 ? 'id' : 'en';
}

self.addEventListener('push', function (event) {
  var msg = {};
  try { msg = event.data ? event.data.json() : {}; } catch (e) { msg = {}; }
  var d = msg.data || {};
  var tx = TEXT[lang()];
  var food = tx.food[d.food_type] || d.food_type || '';
  var title = tx.offer + ': ' + (d.quantity_kg || '') + ' ' + tx.kg + ' ' + food;
  var body;
  if (d.answer_by && Date.parse(d.answer_by) < Date.now()) {
    body = tx.expired;
  } else {
    var from = d.provider ? tx.from + ' ' + d.provider.name + (d.provider.address ? ' (' + d.provider.address + ')' : '') : '';
    var by = d.answer_by ? tx.answer_by + ' ' + new Date(Date.parse(d.answer_by)).toLocaleTimeString(lang() === 'id' ? 'id-ID' : 'en-GB', { hour: '2-digit', minute: '2-digit' }) : '';
    body = [from, by].filter(function (x) { return x; }).join(' · ');
  }
  event.waitUntil(self.registration.showNotification(title, {
    body: body,
    tag: msg.id || d.surplus_id || 'offer',
    requireInteraction: true,
    data: { url: '/kiosk' }
  }));
});

self.addEventListener('notificationclick', function (event) {
  event.notification.close();
  event.waitUntil(self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(function (list) {
    for (var i = 0; i < list.length; i++) {
      if (new URL(list[i].url).pathname === '/kiosk' && 'focus' in list[i]) { return list[i].focus(); }
    }
    return self.clients.openWindow('/kiosk');
  }));
});
