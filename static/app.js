// stomp-gateway demo: @stomp/stompjs 7 in the browser, nothing else.
//
// One STOMP connection to ws(s)://<this host>/ws (the gateway serves this page and the
// WebSocket on the same port) carries four things:
//   * per-user notifications   SUBSCRIBE /exchange/<exchange>/user.<id>
//   * broadcast                SUBSCRIBE /exchange/<exchange>/broadcast
//     (pushed by examples/python/notify.py or examples/php/notify.php, which declare the
//     durable topic exchange; this page declares nothing)
//   * a chat room              SUBSCRIBE + SEND /topic/chat.<room>
//   * request / reply          SEND /queue/<rpc> with reply-to:/temp-queue/rpc; answers
//     arrive as MESSAGEs of no subscription of ours (onUnhandledMessage)
// Every frame received (and, optionally, sent) is shown in the log.
//
// Settings come from the query string (?exchange=&user=&room=&nick=&rpc=&url=&login=
// &passcode=&connect=0) over the defaults below; the settings form rewrites the query.
'use strict';

(() => {
  const DEFAULTS = {
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
    login: 'guest',
    passcode: 'guest',
    exchange: 'stomp_exchange',
    user: '42',
    room: 'lobby',
    nick: '',
    rpc: 'rpc_requests',
    connect: '1',
  };
  const RECONNECT_DELAY_MS = 2000;
  const RPC_TIMEOUT_MS = 10000;
  const LOG_LIMIT = 300;
  const REPLY_TO = '/temp-queue/rpc';

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const config = Object.fromEntries(
    Object.entries(DEFAULTS).map(([k, v]) => [k, params.get(k) ?? v]),
  );
  if (!config.nick) config.nick = `user ${config.user}`;

  const dest = {
    user: () => `/exchange/${config.exchange}/user.${config.user}`,
    broadcast: () => `/exchange/${config.exchange}/broadcast`,
    chat: () => `/topic/chat.${config.room}`,
    rpc: () => `/queue/${config.rpc}`,
  };

  // -- state ------------------------------------------------------------------------
  let client = null;
  let notificationsPaused = false; // the exchange was missing: reconnect without it
  let rpcCounter = 0;
  const pendingRpc = new Map(); // correlation-id -> {li, sentAt, timer}
  const counts = { user: 0, broadcast: 0, chat: 0, rpc: 0, in: 0, out: 0 };

  // -- small DOM helpers -------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') node.className = v;
      else if (k.startsWith('data-')) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) {
      if (child != null) node.append(child); // strings become text nodes: never HTML
    }
    return node;
  }
  const time = () => new Date().toLocaleTimeString([], { hour12: false });
  function bump(name) {
    counts[name] += 1;
    const target = { in: 'count-frames-in', out: 'count-frames-out' }[name] || `count-${name}`;
    $(target).textContent = String(counts[name]);
  }
  function setChip(id, status, title) {
    const chip = $(id);
    chip.dataset.status = status;
    if (title) chip.title = title;
  }

  // -- connection state --------------------------------------------------------------
  function setState(state, detail = '') {
    document.body.dataset.state = state;
    const pill = $('state');
    pill.dataset.state = state;
    pill.textContent = detail ? `${state} · ${detail}` : state;
    const active = client?.active;
    $('toggle').textContent = active ? 'Disconnect' : 'Connect';
    const usable = state === 'connected';
    for (const id of ['chat-send', 'rpc-send']) $(id).disabled = !usable;
  }

  function showBanner({ title, text, code = '', retry = false, kind = 'error' }) {
    const banner = $('banner');
    banner.dataset.kind = kind;
    $('banner-title').textContent = title;
    $('banner-text').textContent = text;
    $('banner-code').textContent = code;
    $('banner-code').hidden = !code;
    $('banner-retry').hidden = !retry;
    banner.hidden = false;
  }
  function hideBanner() {
    $('banner').hidden = true;
  }

  // -- frame log -------------------------------------------------------------------------
  function logFrame(direction, command, headers = {}, body = '') {
    bump(direction);
    const log = $('log');
    // stompjs keeps the first of duplicate headers by reading them last to first, so
    // received headers come back reversed: show them in wire order.
    const entries = Object.entries(headers);
    if (direction === 'in') entries.reverse();
    const head = entries.map(([k, v]) => `${k}:${v}`).join('\n');
    const shown = body.length > 2000 ? `${body.slice(0, 2000)}… (${body.length} chars)` : body;
    const item = el(
      'li',
      { class: `frame ${direction}`, 'data-command': command, 'data-direction': direction },
      el('span', { class: 'frame-meta' }, direction === 'in' ? '⬇' : '⬆', ' ', time()),
      el('span', { class: `frame-cmd cmd-${command.toLowerCase()}` }, command),
      el('pre', { class: 'frame-headers' }, head),
      shown ? el('pre', { class: 'frame-body' }, shown) : null,
    );
    log.prepend(item);
    while (log.children.length > LOG_LIMIT) log.lastElementChild.remove();
  }

  // -- STOMP helpers (every frame we send is logged) ------------------------------------
  function subscribe(destination, id, onMessage, chipId) {
    const receipt = `sub-${id}-${Date.now()}`;
    setChip(chipId, 'pending', `subscribing to ${destination}`);
    client.watchForReceipt(receipt, (frame) => {
      logFrame('in', frame.command, frame.headers, frame.body);
      setChip(chipId, 'ok', `subscribed to ${destination}`);
    });
    const headers = { id, receipt };
    logFrame('out', 'SUBSCRIBE', { destination, ...headers });
    return client.subscribe(destination, (message) => {
      logFrame('in', message.command, message.headers, message.body);
      onMessage(message);
    }, headers);
  }

  function publish(destination, body, headers = {}) {
    logFrame('out', 'SEND', { destination, ...headers }, body);
    client.publish({ destination, body, headers });
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  }

  // -- notifications ---------------------------------------------------------------------
  const SHOWN_HEADERS = ['content-type', 'persistent', 'app-id', 'correlation-id', 'type'];

  function describe(payload, raw) {
    // Accepts {title, text}, {title, message} and the seed article's
    // {event, notification: {type, title, message}} shapes; anything else shown raw.
    if (payload && typeof payload === 'object' && !Array.isArray(payload)) {
      const inner = payload.notification && typeof payload.notification === 'object'
        ? payload.notification : payload;
      const title = inner.title ?? payload.event ?? 'Notification';
      const text = inner.text ?? inner.message ?? (inner === payload ? raw : JSON.stringify(inner));
      return { title: String(title), text: typeof text === 'string' ? text : JSON.stringify(text), level: inner.type };
    }
    return { title: 'Notification', text: raw, level: undefined };
  }

  function onNotification(kind, message) {
    bump(kind);
    $('notifications-empty').hidden = true;
    const { title, text, level } = describe(parseJson(message.body), message.body);
    const meta = el('dl', { class: 'headers' });
    for (const name of SHOWN_HEADERS) {
      if (message.headers[name] !== undefined) {
        meta.append(el('dt', {}, name), el('dd', { 'data-header': name }, message.headers[name]));
      }
    }
    const card = el(
      'li',
      { class: `note ${kind}`, 'data-kind': kind, 'data-body': message.body, 'data-level': level || 'info' },
      el('div', { class: 'note-head' },
        el('span', { class: `tag ${kind}` }, kind === 'user' ? `user.${config.user}` : 'broadcast'),
        el('strong', { class: 'note-title' }, title),
        el('time', {}, time())),
      el('p', { class: 'note-text' }, text),
      meta,
    );
    $('notifications').prepend(card);
  }

  function subscribeNotifications() {
    subscribe(dest.user(), 'notify-user', (m) => onNotification('user', m), 'sub-user');
    subscribe(dest.broadcast(), 'notify-broadcast', (m) => onNotification('broadcast', m), 'sub-broadcast');
  }

  function exchangeMissing(frame) {
    if (frame.headers.message !== 'not_found') return false;
    return frame.body.includes(`no exchange '${config.exchange}'`);
  }

  function showExchangeHint() {
    showBanner({
      kind: 'hint',
      title: `Exchange '${config.exchange}' does not exist yet`,
      text: 'RabbitMQ answered NOT_FOUND to the notification subscriptions, so they are paused '
        + '(chat and request/reply keep working). The backend examples declare the exchange '
        + '(durable, topic): run one of them once, then press Retry.',
      code: pushCommands('broadcast', '{"title":"Hello","text":"everyone"}'),
      retry: true,
    });
  }

  function pushCommands(target, json) {
    const env = config.exchange === DEFAULTS.exchange ? '' : `STOMP_EXCHANGE=${config.exchange} `;
    const args = target === 'broadcast' ? `broadcast '${json}'` : `user ${config.user} '${json}'`;
    return `${env}python examples/python/notify.py ${args}\n${env}php examples/php/notify.php ${args}`;
  }

  // -- chat ------------------------------------------------------------------------------
  function onChat(message) {
    bump('chat');
    const payload = parseJson(message.body);
    const from = payload && typeof payload.from === 'string' ? payload.from : 'anonymous';
    const text = payload && typeof payload.text === 'string' ? payload.text : message.body;
    const mine = from === config.nick;
    $('chat').append(
      el('li', { class: `chat-msg${mine ? ' mine' : ''}`, 'data-from': from },
        el('span', { class: 'who' }, mine ? `${from} (you)` : from),
        el('span', { class: 'bubble' }, text),
        el('time', {}, time())),
    );
    $('chat').lastElementChild.scrollIntoView({ block: 'nearest' });
  }

  // -- request / reply -------------------------------------------------------------------
  function ask(text) {
    const correlationId = `rpc-${++rpcCounter}-${Date.now().toString(36)}`;
    $('rpc-empty').hidden = true;
    const li = el('li', { class: 'rpc pending', 'data-correlation-id': correlationId },
      el('div', { class: 'rpc-q' }, el('span', { class: 'tag' }, 'asked'), text),
      el('div', { class: 'rpc-a' }, el('span', { class: 'tag' }, 'reply'), el('span', { class: 'answer' }, 'waiting…')));
    $('rpc').prepend(li);
    const timer = setTimeout(() => {
      if (!pendingRpc.delete(correlationId)) return;
      li.classList.replace('pending', 'timeout');
      li.querySelector('.answer').textContent = `no reply within ${RPC_TIMEOUT_MS / 1000}s: is a responder consuming ${dest.rpc()}?`;
    }, RPC_TIMEOUT_MS);
    pendingRpc.set(correlationId, { li, sentAt: performance.now(), timer });
    publish(dest.rpc(), text, {
      'reply-to': REPLY_TO,
      'correlation-id': correlationId,
      'content-type': 'text/plain',
    });
  }

  function onReply(message) {
    // Temp-queue replies carry subscription:/temp-queue/rpc, which is no subscription of
    // ours, so stompjs hands them to onUnhandledMessage.
    logFrame('in', message.command, message.headers, message.body);
    const pending = pendingRpc.get(message.headers['correlation-id']);
    if (!pending) return;
    pendingRpc.delete(message.headers['correlation-id']);
    clearTimeout(pending.timer);
    bump('rpc');
    const payload = parseJson(message.body);
    const answer = payload && typeof payload.reply === 'string' ? payload.reply : message.body;
    const ms = Math.round(performance.now() - pending.sentAt);
    pending.li.classList.replace('pending', 'done');
    pending.li.dataset.reply = message.body;
    pending.li.querySelector('.answer').textContent = answer;
    pending.li.querySelector('.rpc-a').append(el('small', { class: 'muted' }, ` ${ms} ms · ${message.headers.destination}`));
  }

  // -- lifecycle -------------------------------------------------------------------------
  function connect() {
    const c = new StompJs.Client({
      brokerURL: config.url,
      connectHeaders: { login: config.login, passcode: config.passcode },
      reconnectDelay: RECONNECT_DELAY_MS,
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
      debug: () => {},
    });
    client = c;
    // Events of a client replaced by "Apply and reconnect" (or stopped) are ignored.
    const current = (handler) => (...args) => (client === c ? handler(...args) : undefined);
    c.beforeConnect = current(() => {
      setState('connecting');
      logFrame('out', 'CONNECT', { 'accept-version': '1.2,1.1,1.0', login: config.login, passcode: '••••••' });
    });
    c.onConnect = current((frame) => {
      logFrame('in', frame.command, frame.headers, frame.body);
      $('info-server').textContent = frame.headers.server ?? '(hidden)';
      $('info-session').textContent = frame.headers.session ?? '–';
      $('info-version').textContent = frame.headers.version ?? '–';
      $('info-heartbeat').textContent = frame.headers['heart-beat'] ?? '–';
      setState('connected');
      if (notificationsPaused) {
        setChip('sub-user', 'paused', 'paused: exchange missing');
        setChip('sub-broadcast', 'paused', 'paused: exchange missing');
      } else {
        hideBanner();
        subscribeNotifications();
      }
      subscribe(dest.chat(), 'chat', onChat, 'sub-chat');
    });
    c.onUnhandledMessage = current(onReply);
    c.onUnhandledReceipt = current((frame) => logFrame('in', frame.command, frame.headers, frame.body));
    c.onStompError = current((frame) => {
      logFrame('in', frame.command, frame.headers, frame.body);
      if (exchangeMissing(frame)) {
        notificationsPaused = true;
        showExchangeHint();
        return; // the gateway closes the session; stompjs reconnects without them
      }
      if (frame.headers.message === 'Bad CONNECT') {
        showBanner({ title: 'Login refused', text: frame.body.trim() || frame.headers.message });
        c.deactivate(); // retrying the same credentials would fail again
        setState('error', 'login refused');
        return;
      }
      showBanner({ title: `ERROR: ${frame.headers.message}`, text: frame.body.trim() });
    });
    c.onWebSocketClose = current((event) => {
      if (document.body.dataset.state === 'error') return; // keep the reason shown
      setState(c.active ? 'reconnecting' : 'disconnected', event.code === 1000 ? '' : `code ${event.code}`);
      for (const chip of ['sub-user', 'sub-broadcast', 'sub-chat']) {
        if ($(chip).dataset.status !== 'paused') setChip(chip, 'idle');
      }
    });
    $('info-url').textContent = config.url;
    c.activate();
  }

  async function disconnect() {
    if (!client) return;
    const old = client;
    client = null;
    await old.deactivate();
    setState('disconnected');
  }

  // -- settings --------------------------------------------------------------------------
  function renderConfig() {
    for (const node of document.querySelectorAll('.user-id')) node.textContent = config.user;
    $('room-name').textContent = config.room;
    $('dest-user').textContent = dest.user();
    $('dest-broadcast').textContent = dest.broadcast();
    $('dest-chat').textContent = dest.chat();
    $('dest-rpc').textContent = dest.rpc();
    $('push-hint').textContent = pushCommands('user', '{"title":"Hello","text":"just for you"}');
    $('rpc-hint').textContent = `python examples/python/rpc_server.py --queue ${config.rpc}`;
    $('settings-summary').textContent = `· user ${config.user} · exchange ${config.exchange} · room ${config.room}`;
    $('lib-version').textContent = '7.5.0';
    const form = $('settings-form');
    for (const key of ['url', 'login', 'passcode', 'exchange', 'user', 'room', 'nick', 'rpc']) {
      form.elements[key].value = config[key];
    }
  }

  $('settings-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const form = event.target;
    for (const key of ['url', 'login', 'passcode', 'exchange', 'user', 'room', 'nick', 'rpc']) {
      config[key] = form.elements[key].value.trim() || DEFAULTS[key];
    }
    const query = new URLSearchParams();
    for (const key of ['exchange', 'user', 'room', 'nick', 'rpc', 'url', 'login']) {
      if (config[key] !== DEFAULTS[key]) query.set(key, config[key]);
    }
    history.replaceState(null, '', query.size ? `?${query}` : location.pathname);
    notificationsPaused = false;
    renderConfig();
    await disconnect();
    connect();
  });

  $('toggle').addEventListener('click', async () => {
    if (client?.active) {
      await disconnect();
    } else {
      connect();
    }
  });

  $('banner-retry').addEventListener('click', () => {
    notificationsPaused = false;
    hideBanner();
    if (client?.connected) subscribeNotifications();
  });

  $('chat-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('chat-input');
    const text = input.value.trim();
    if (!text || !client?.connected) return;
    publish(dest.chat(), JSON.stringify({ from: config.nick, text }), { 'content-type': 'application/json' });
    input.value = '';
  });

  $('rpc-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('rpc-input');
    const text = input.value.trim();
    if (!text || !client?.connected) return;
    ask(text);
    input.value = '';
  });

  $('log-sent').addEventListener('change', (event) => {
    $('log').dataset.showSent = String(event.target.checked);
  });
  $('log-clear').addEventListener('click', () => $('log').replaceChildren());

  renderConfig();
  setState('disconnected');
  if (config.connect !== '0') connect();

  // For the console (and the end-to-end tests): read-only views of the page's state.
  window.demo = Object.freeze({
    config: () => ({ ...config }),
    counts: () => ({ ...counts }),
    connected: () => Boolean(client?.connected),
  });
})();
