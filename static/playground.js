// The playground's websocket client: send the conversation, render deltas, show the cost, stop on demand.
(function () {
  "use strict";
  var form = document.getElementById("play-form");
  if (!form) return;
  var log = document.getElementById("pg-log");
  var state = document.getElementById("pg-state");
  var summary = document.getElementById("pg-summary");
  var send = document.getElementById("pg-send");
  var stop = document.getElementById("pg-stop");
  var history = [];
  var socket = null;
  var reply = null;
  var asked = null;  // the user bubble of the turn in flight


  function setBusy(busy) {
    send.disabled = busy;
    stop.disabled = !busy;
    // Screen readers wait for the whole reply instead of announcing every streamed token.
    if (busy) log.setAttribute("aria-busy", "true"); else log.removeAttribute("aria-busy");
  }

  function bubble(role, text) {
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
    log.appendChild(div);
    return body;
  }

  function dropTurn() {
    // Nothing was produced: forget the turn (both bubbles) so a retry does not send it twice.
    if (asked) asked.parentNode.remove();
    if (reply) reply.parentNode.remove();
    asked = null;
    reply = null;
    history.pop();
  }

  function fact(name, value) {
    var dt = document.createElement("dt");
    dt.textContent = name;
    var dd = document.createElement("dd");
    dd.textContent = value;
    summary.appendChild(dt);
    summary.appendChild(dd);
  }

  function showSummary(done) {
    summary.textContent = "";
    var u = done.usage || {};
    fact("Model", done.model + (done.alias ? " (via alias " + done.alias + ")" : ""));
    fact("Provider", (done.provider || "?") + (done.simulated ? " (simulated)" : ""));
    fact("Fallback", done.fallback_layer ? "layer " + done.fallback_layer : "none");
    fact("Tokens", (u.prompt_tokens || 0) + " in · " + (u.completion_tokens || 0) + " out");
    fact("Cost", done.cost);  // written by the server, like every amount on the pages
    summary.hidden = false;
  }

  function finish(text) {
    if (reply && reply.textContent) history.push({ role: "assistant", content: reply.textContent });
    reply = null;
    asked = null;
    state.textContent = text;
    setBusy(false);
  }

  function onMessage(event) {
    var msg = JSON.parse(event.data);
    if (msg.type === "delta") {
      reply.textContent += msg.text;
      state.textContent = "Streaming…";
    } else if (msg.type === "done") {
      showSummary(msg);
      finish("Done.");
    } else if (msg.type === "stopped") {
      if (msg.model) showSummary(msg);  // what the stopped reply was billed
      finish("Stopped.");
    } else if (msg.type === "error") {
      if (reply && !reply.textContent) dropTurn();
      finish("Error " + (msg.status || "") + ": " + msg.message);
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
      if (!reply) return;
      if (!opened) dropTurn();  // the message never left: a retry must not send it twice
      finish(opened ? "Connection closed." : "Could not connect. Are you still logged in? Reload the page.");
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var prompt = form.elements.prompt.value.trim();
    if (!prompt) return;
    history.push({ role: "user", content: prompt });
    asked = bubble("user", prompt);
    reply = bubble("assistant", "");
    form.elements.prompt.value = "";
    form.elements.prompt.focus();  // Send is disabled while busy: keep focus where the next message goes
    summary.hidden = true;
    state.textContent = "Waiting for the first token…";
    setBusy(true);
    connect(function () {
      socket.send(JSON.stringify({
        type: "start", csrf: form.dataset.csrf, model: form.elements.model.value,
        system: form.elements.system.value, temperature: form.elements.temperature.value,
        max_tokens: form.elements.max_tokens.value, messages: history
      }));
    });
  });

  stop.addEventListener("click", function () {
    if (socket) socket.send(JSON.stringify({ type: "stop" }));
  });

  document.getElementById("pg-clear").addEventListener("click", function () {
    if (reply) {
      // A reply in flight belongs to the old chat: closing the socket stops (and bills) it, and
      // forgetting the turn first keeps its text out of the new chat's history.
      reply = null;
      asked = null;
      if (socket) socket.close();
      socket = null;
      setBusy(false);
    }
    history = [];
    log.textContent = "";
    summary.hidden = true;
    state.textContent = "";
  });

  form.elements.prompt.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
})();
