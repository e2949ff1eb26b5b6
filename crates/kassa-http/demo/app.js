// Kassa's demo storefront: a catalog, a cart and both ways to pay, talking to Kassa's API with
// the publishable key exactly as a shop's own storefront would.
//
// The order token is the customer's credential: it lives in this script's memory only. It is
// never put in a URL, in localStorage or sessionStorage, and no request carries a Referer
// (the page is served with Referrer-Policy: no-referrer).
'use strict';

const shop = {
  config: null,
  cartId: null,
  // The order placed by the embedded flow: {id, token, paymentIntentId, clientSecret}.
  order: null,
  // The last checkout request: {flow, body, key}. Its Idempotency-Key is reused only when
  // the same request (same flow, same body) is sent again, as a retry.
  attempt: null,
  // Set while a request runs: the buttons do nothing meanwhile (no double submits).
  busy: false,
};

/// A fresh Idempotency-Key. crypto.getRandomValues, unlike randomUUID, works on plain http
/// from another machine too.
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/// Runs `action` unless another one is running, with every button disabled meanwhile.
async function exclusively(action) {
  if (shop.busy) return;
  shop.busy = true;
  const buttons = Array.from(document.querySelectorAll('button'));
  buttons.forEach((button) => { button.disabled = true; });
  try {
    await action();
  } catch (error) {
    say(error.message);
  } finally {
    buttons.forEach((button) => { button.disabled = false; });
    shop.busy = false;
  }
}

const $ = (id) => document.getElementById(id);

function say(text) {
  $('message').textContent = text || '';
}

function money(minor, currency) {
  const exponent = ['jpy', 'krw'].includes(currency) ? 0 : 2;
  const unit = 10 ** exponent;
  const whole = Math.trunc(minor / unit);
  const fraction = String(Math.abs(minor % unit)).padStart(exponent, '0');
  return `${exponent ? `${whole}.${fraction}` : whole} ${currency.toUpperCase()}`;
}

/// Kassa's API: JSON in and out, the storefront key unless another credential is given.
async function kassa(method, path, body, { bearer, idempotencyKey } = {}) {
  const headers = { Authorization: `Bearer ${bearer || shop.config.publishable_key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    referrerPolicy: 'no-referrer',
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(answer.error ? answer.error.message : `HTTP ${response.status}`);
    error.status = response.status;
    error.body = answer;
    throw error;
  }
  return answer;
}

/// A small stand-in for Stripe.js: calls the emulator's Stripe API from the browser with the
/// emulator's publishable key and the PaymentIntent's client secret, form-encoded.
async function stripe(path, fields) {
  const form = new URLSearchParams({ key: shop.config.stripe_publishable_key, ...fields });
  const response = await fetch(`${shop.config.stripe_api_base}${path}`, {
    method: 'POST',
    body: form,
    referrerPolicy: 'no-referrer',
  });
  return { status: response.status, body: await response.json().catch(() => ({})) };
}

function renderCatalog() {
  const list = $('catalog');
  list.replaceChildren();
  for (const item of shop.config.catalog) {
    const row = document.createElement('li');
    const label = document.createElement('span');
    label.textContent = `${item.name} (${item.size}) — ${money(item.unit_amount, item.currency)}`;
    const add = document.createElement('button');
    add.type = 'button';
    add.id = `add-${item.sku}`;
    add.textContent = 'Add to cart';
    add.addEventListener('click', () => exclusively(() => addToCart(item.sku)));
    row.append(label, add);
    list.append(row);
  }
}

function renderCart(cart) {
  const table = $('cart-lines');
  table.replaceChildren();
  for (const line of cart.lines) {
    const row = document.createElement('tr');
    const what = document.createElement('td');
    what.textContent = `${line.quantity} × ${line.sku}`;
    const amount = document.createElement('td');
    amount.className = 'amount';
    amount.textContent = money(line.amount, cart.currency);
    row.append(what, amount);
    table.append(row);
  }
  $('cart-total').textContent = money(cart.total, cart.currency);
  $('cart-total').dataset.minor = String(cart.total);
  $('cart-section').hidden = cart.lines.length === 0;
}

async function addToCart(sku) {
  say('');
  if (!shop.cartId) {
    const cart = await kassa('POST', '/v1/carts', { currency: 'eur' });
    shop.cartId = cart.id;
  }
  const cart = await kassa('POST', `/v1/carts/${shop.cartId}/lines`, { sku, quantity: 1 });
  renderCart(cart);
}

function checkoutBody() {
  return {
    email: $('email').value,
    shipping_address: {
      name: $('name').value,
      line1: $('line1').value,
      city: $('city').value,
      postal_code: $('postal_code').value,
      country: $('country').value,
    },
    expected_total: Number($('cart-total').dataset.minor),
  };
}

async function checkout(flow) {
  say('');
  const body = checkoutBody();
  const same = shop.attempt
    && shop.attempt.flow === flow
    && shop.attempt.body === JSON.stringify(body);
  if (!same) shop.attempt = { flow, body: JSON.stringify(body), key: newKey() };
  const path = flow === 'hosted' ? 'checkout_session' : 'checkout';
  const placed = await kassa('POST', `/v1/carts/${shop.cartId}/${path}`, body, {
    idempotencyKey: shop.attempt.key,
  });
  if (flow === 'hosted') {
    // The customer pays on the provider's page and comes back to the shop's return URL,
    // which carries the session id only. The token is not needed there and goes nowhere.
    window.location.assign(placed.checkout_session.url);
    return;
  }
  shop.order = {
    id: placed.order.id,
    token: placed.order_token,
    paymentIntentId: placed.payment.payment_intent_id,
    clientSecret: placed.payment.client_secret,
  };
  $('cart-section').hidden = true;
  $('catalog-section').hidden = true;
  $('payment-section').hidden = false;
  await showOrder();
}

async function confirmCard() {
  say('');
  const { status, body } = await stripe(
    `/v1/payment_intents/${shop.order.paymentIntentId}/confirm`,
    { payment_method: $('card').value, client_secret: shop.order.clientSecret },
  );
  if (status === 402) {
    say(`${body.error.message} Try another card.`);
    return;
  }
  if (status !== 200) {
    say(body.error ? body.error.message : `The payment failed (${status}).`);
    return;
  }
  if (body.status === 'requires_action') {
    $('three-d-secure').hidden = false;
    return;
  }
  await settle();
}

async function authenticate(outcome) {
  const { status, body } = await stripe(
    `/_emulator/payment_intents/${shop.order.paymentIntentId}/authenticate`,
    { outcome, client_secret: shop.order.clientSecret },
  );
  $('three-d-secure').hidden = true;
  if (status !== 200 || body.status === 'requires_payment_method') {
    say('Authentication failed. Try another card.');
    return;
  }
  await settle();
}

/// The payment is with the provider; its webhook reaches Kassa a moment later. Asked for a
/// minute, less and less often.
async function settle() {
  $('payment-section').hidden = true;
  const deadline = Date.now() + 60000;
  for (let wait = 200; Date.now() < deadline; wait = Math.min(wait * 1.5, 3000)) {
    const order = await showOrder();
    if (order.status !== 'pending_payment' && order.status !== 'requires_action') return;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  say('The payment is still being processed; this page does not update any more.');
}

async function showOrder() {
  const order = await kassa('GET', `/v1/orders/${shop.order.id}`, undefined, {
    bearer: shop.order.token,
  });
  $('order-section').hidden = false;
  $('order-id').textContent = order.id;
  $('order-status').textContent = order.status;
  $('order-total').textContent = money(order.total, order.currency);
  return order;
}

async function start() {
  const response = await fetch('/demo/config.json', { referrerPolicy: 'no-referrer' });
  shop.config = await response.json();
  renderCatalog();
  $('checkout-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const flow = event.submitter ? event.submitter.value : 'embedded';
    exclusively(() => checkout(flow));
  });
  $('confirm').addEventListener('click', () => exclusively(confirmCard));
  $('3ds-succeed').addEventListener('click', () => exclusively(() => authenticate('succeed')));
  $('3ds-fail').addEventListener('click', () => exclusively(() => authenticate('fail')));
}

start().catch((e) => say(e.message));
