// The legacy flow: code written years ago for rabbitmq_web_stomp with stompjs 2.3.3
// (`Stomp.client(url)`, `connect(login, passcode, onConnect, onError)`, `subscribe`,
// `send(destination, headers, body)`, `onreceive` for temp-queue replies) works against
// the gateway with nothing changed but the URL. Same query parameters as index.html.
'use strict';

(function () {
  var params = new URLSearchParams(location.search);
  var config = {
    url: params.get('url') || (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws',
    login: params.get('login') || 'guest',
    passcode: params.get('passcode') || 'guest',
    exchange: params.get('exchange') || 'stomp_exchange',
    user: params.get('user') || '42',
    room: params.get('room') || 'lobby',
    nick: params.get('nick') || 'legacy ' + (params.get('user') || '42'),
    rpc: params.get('rpc') || 'rpc_requests',
  };
  var counts = { user: 0, broadcast: 0, chat: 0, rpc: 0 };
  var pending = {};
  var rpcCounter = 0;

  function $(id) { return document.getElementById(id); }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }
  function bump(name) { counts[name] += 1; $('count-' + name).textContent = counts[name]; }
  function setState(state) {
    document.body.dataset.state = state;
    $('state').dataset.state = state;
    $('state').textContent = state;
    $('chat-send').disabled = $('rpc-send').disabled = state !== 'connected';
  }
  function json(text) { try { return JSON.parse(text); } catch (e) { return undefined; } }

  $('info-url').textContent = config.url;
  $('user-id').textContent = config.user;
  $('room-name').textContent = config.room;

  var client = Stomp.client(config.url);
  client.heartbeat.outgoing = 10000;
  client.heartbeat.incoming = 10000;
  client.debug = function (line) {
    var log = $('log');
    // stompjs prints whole frames, NUL terminator included: drop it for display.
    log.prepend(el('li', 'frame raw', line.replace(/\0/g, '')));
    while (log.children.length > 200) log.lastElementChild.remove();
  };

  function notification(kind) {
    return function (message) {
      bump(kind);
      var payload = json(message.body) || {};
      var li = el('li', 'note ' + kind);
      li.dataset.kind = kind;
      li.dataset.body = message.body;
      li.dataset.appId = message.headers['app-id'] || '';
      li.dataset.contentType = message.headers['content-type'] || '';
      var head = el('div', 'note-head');
      head.append(el('span', 'tag ' + kind, kind === 'user' ? 'user.' + config.user : 'broadcast'));
      head.append(el('strong', 'note-title', payload.title || 'Notification'));
      li.append(head, el('p', 'note-text', payload.text || message.body));
      $('notifications').prepend(li);
    };
  }

  // Temp-queue replies belong to no subscription: stompjs 2.3.3 hands them to onreceive.
  client.onreceive = function (message) {
    var item = pending[message.headers['correlation-id']];
    if (!item) return;
    delete pending[message.headers['correlation-id']];
    bump('rpc');
    var payload = json(message.body) || {};
    item.className = 'rpc done';
    item.dataset.reply = message.body;
    item.querySelector('.answer').textContent = payload.reply || message.body;
  };

  setState('connecting');
  client.connect(config.login, config.passcode, function (frame) {
    $('info-server').textContent = frame.headers.server || '(hidden)';
    $('info-version').textContent = frame.headers.version || '–';
    setState('connected');
    client.subscribe('/exchange/' + config.exchange + '/user.' + config.user, notification('user'));
    client.subscribe('/exchange/' + config.exchange + '/broadcast', notification('broadcast'));
    // The last SUBSCRIBE asks for a receipt: the gateway handles frames in order, so
    // once it arrives all three subscriptions are in place.
    client.onreceipt = function (receipt) {
      if (receipt.headers['receipt-id'] === 'legacy-ready') document.body.dataset.subscribed = 'true';
    };
    client.subscribe('/topic/chat.' + config.room, function (message) {
      bump('chat');
      var payload = json(message.body) || {};
      var li = el('li', 'chat-msg' + (payload.from === config.nick ? ' mine' : ''));
      li.dataset.from = payload.from || '';
      li.append(el('span', 'who', payload.from || 'anonymous'), el('span', 'bubble', payload.text || message.body));
      $('chat').append(li);
    }, { receipt: 'legacy-ready' });
  }, function (error) {
    $('info-error').textContent = typeof error === 'string' ? error : error.headers.message + ': ' + error.body;
    setState('error');
  });

  $('chat-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var text = $('chat-input').value.trim();
    if (!text) return;
    client.send('/topic/chat.' + config.room, { 'content-type': 'application/json' },
      JSON.stringify({ from: config.nick, text: text }));
    $('chat-input').value = '';
  });

  $('rpc-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var text = $('rpc-input').value.trim();
    if (!text) return;
    var id = 'legacy-rpc-' + (++rpcCounter);
    var li = el('li', 'rpc pending');
    li.dataset.correlationId = id;
    var q = el('div', 'rpc-q');
    q.append(el('span', 'tag', 'asked'), document.createTextNode(text));
    var a = el('div', 'rpc-a');
    a.append(el('span', 'tag', 'reply'), el('span', 'answer', 'waiting…'));
    li.append(q, a);
    $('rpc').prepend(li);
    pending[id] = li;
    client.send('/queue/' + config.rpc, { 'reply-to': '/temp-queue/rpc', 'correlation-id': id }, text);
    $('rpc-input').value = '';
  });
})();
