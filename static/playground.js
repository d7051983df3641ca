// The playground's websocket client: send the conversation, render deltas, show the cost, stop on demand.
// With Compare on, the same turn goes to a second model; each side keeps its own column and history.
(function () {
  "use strict";
  var form = document.getElementById("play-form");
  if (!form) return;
  var state = document.getElementById("pg-state");
  var send = document.getElementById("pg-send");
  var stop = document.getElementById("pg-stop");
  var compareOn = document.getElementById("pg-compare-on");
  var sideB = document.getElementById("pg-side-b");
  var socket = null;

  function makeSide(name, log, summary, title, select) {
    return { name: name, log: log, summary: summary, title: title, select: select,
             history: [], reply: null, asked: null, outcome: null };
  }
  var A = makeSide("a", document.getElementById("pg-log"), document.getElementById("pg-summary"),
                   document.getElementById("pg-title-a"), form.elements.model);
  var B = makeSide("b", document.getElementById("pg-log-b"), document.getElementById("pg-summary-b"),
                   document.getElementById("pg-title-b"), form.elements.compare);
  var turn = [];  // the sides answering the turn in flight

  function comparing() { return compareOn.checked; }
  function busy() { return turn.length > 0; }

  function setBusy(on) {
    send.disabled = on;
    stop.disabled = !on;
    compareOn.disabled = on;  // a turn keeps the sides it started with
    // Screen readers wait for the whole reply instead of announcing every streamed token.
    [A, B].forEach(function (side) {
      if (on) side.log.setAttribute("aria-busy", "true"); else side.log.removeAttribute("aria-busy");
    });
  }

  function bubble(side, role, text) {
    var div = document.createElement("div");
    div.className = "msg " + role;
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Model";
    var body = document.createElement("div");
    body.className = "text";
    body.textContent = text;  // textContent: model output is never parsed as HTML
    div.appendChild(who);
    div.appendChild(body);
    side.log.appendChild(div);
    return body;
  }

  function dropTurn(side) {
    // Nothing was produced: forget the turn (both bubbles) so a retry does not send it twice.
    if (side.asked) side.asked.parentNode.remove();
    if (side.reply) side.reply.parentNode.remove();
    side.asked = null;
    side.reply = null;
    side.history.pop();
  }

  function fact(side, name, value) {
    var dt = document.createElement("dt");
    dt.textContent = name;
    var dd = document.createElement("dd");
    dd.textContent = value;
    side.summary.appendChild(dt);
    side.summary.appendChild(dd);
  }

  function showSummary(side, done) {
    side.summary.textContent = "";
    var u = done.usage || {};
    fact(side, "Model", done.model + (done.alias ? " (via alias " + done.alias + ")" : ""));
    fact(side, "Provider", (done.provider || "?") + (done.simulated ? " (simulated)" : ""));
    fact(side, "Fallback", done.fallback_layer ? "layer " + done.fallback_layer : "none");
    fact(side, "Tokens", (u.prompt_tokens || 0) + " in · " + (u.completion_tokens || 0) + " out");
    fact(side, "Cost", done.cost);  // written by the server, like every amount on the pages
    side.summary.hidden = false;
  }

  function overall() {
    var texts = turn.map(function (side) { return side.outcome; });
    if (texts.every(function (t) { return t === texts[0]; })) return texts[0];
    return turn.map(function (side) { return side.title.textContent + ": " + side.outcome; }).join(" · ");
  }

  function finish(side, text) {
    if (turn.indexOf(side) < 0 || side.outcome) return;
    if (side.reply && side.reply.textContent) side.history.push({ role: "assistant", content: side.reply.textContent });
    side.reply = null;
    side.asked = null;
    side.outcome = text;
    if (turn.every(function (s) { return s.outcome; })) {
      state.textContent = overall();
      turn = [];
      setBusy(false);
    }
  }

  function fail(side, msg) {
    if (side.reply && !side.reply.textContent) dropTurn(side);
    finish(side, "Error " + (msg.status || "") + ": " + msg.message);
  }

  function onMessage(event) {
    var msg = JSON.parse(event.data);
    var side = msg.side === "b" ? B : A;
    if (msg.type === "delta") {
      if (side.reply) side.reply.textContent += msg.text;
      state.textContent = "Streaming…";
    } else if (msg.type === "done") {
      showSummary(side, msg);
      finish(side, "Done.");
    } else if (msg.type === "stopped") {
      if (msg.model) showSummary(side, msg);  // what the stopped reply was billed
      finish(side, "Stopped.");
    } else if (msg.type === "error") {
      if (msg.side) fail(side, msg); else turn.slice().forEach(function (s) { fail(s, msg); });
    }
  }

  function connect(then) {
    if (socket && socket.readyState === WebSocket.OPEN) return then();
    // The server may render the endpoint as a path or as a ws:// URL; always talk to this page's origin.
    var target = new URL(form.dataset.ws, location.href);
    target.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    target.host = location.host;
    var own = new WebSocket(target.href);
    socket = own;
    own.onmessage = function (event) { if (socket === own) onMessage(event); };
    own.onopen = then;
    var opened = false;
    own.addEventListener("open", function () { opened = true; });
    own.onclose = function () {
      if (socket !== own) return;  // a socket "New chat" let go of: the current turn is not its business
      socket = null;
      turn.slice().forEach(function (side) {
        if (!opened) dropTurn(side);  // the message never left: a retry must not send it twice
        finish(side, opened ? "Connection closed." : "Could not connect. Are you still logged in? Reload the page.");
      });
    };
  }

  function titles() {
    A.title.textContent = A.select.value;
    B.title.textContent = B.select.value;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var prompt = form.elements.prompt.value.trim();
    if (!prompt || busy()) return;
    turn = comparing() ? [A, B] : [A];
    titles();
    turn.forEach(function (side) {
      side.history.push({ role: "user", content: prompt });
      side.asked = bubble(side, "user", prompt);
      side.reply = bubble(side, "assistant", "");
      side.outcome = null;
      side.summary.hidden = true;
    });
    form.elements.prompt.value = "";
    form.elements.prompt.focus();  // Send is disabled while busy: keep focus where the next message goes
    state.textContent = "Waiting for the first token…";
    setBusy(true);
    var start = {
      type: "start", csrf: form.dataset.csrf, model: A.select.value,
      system: form.elements.system.value, temperature: form.elements.temperature.value,
      max_tokens: form.elements.max_tokens.value, messages: A.history
    };
    if (comparing()) {
      start.compare = B.select.value;
      start.compare_messages = B.history;
    }
    connect(function () { socket.send(JSON.stringify(start)); });
  });

  stop.addEventListener("click", function () {
    if (socket) socket.send(JSON.stringify({ type: "stop" }));
  });

  function clearSide(side) {
    side.history = [];
    side.reply = null;
    side.asked = null;
    side.log.textContent = "";
    side.summary.hidden = true;
  }

  document.getElementById("pg-clear").addEventListener("click", function () {
    if (busy()) {
      // A reply in flight belongs to the old chat: closing the socket stops (and bills) it, and
      // forgetting the turn first keeps its text out of the new chat's history.
      turn = [];
      if (socket) socket.close();
      socket = null;
      setBusy(false);
    }
    clearSide(A);
    clearSide(B);
    state.textContent = "";
  });

  compareOn.addEventListener("change", function () {
    var on = comparing();
    document.getElementById("pg-compare-field").hidden = !on;
    document.getElementById("pg-grid").classList.toggle("comparing", on);
    document.getElementById("pg-sides").classList.toggle("compare", on);
    sideB.hidden = !on;
    A.title.hidden = !on;
    clearSide(B);
    if (on) {  // the second model continues the same conversation
      B.history = A.history.slice();
      Array.prototype.forEach.call(A.log.children, function (msg) { B.log.appendChild(msg.cloneNode(true)); });
    }
    titles();
  });
  A.select.addEventListener("change", titles);
  B.select.addEventListener("change", titles);

  form.elements.prompt.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
})();
