// "View code": the playground's current settings as an openai-SDK Python call and a curl command.
(function () {
  "use strict";
  var form = document.getElementById("play-form");
  var dialog = document.getElementById("pg-code");
  var opener = document.getElementById("pg-code-open");
  if (!form || !dialog || !opener) return;

  // A JSON string is also a valid Python string literal (escapes included, lone surrogates too).
  function py(text) { return JSON.stringify(text); }

  // Single quotes keep everything literal in a shell ($, backslashes, newlines); a quote closes, escapes, reopens.
  function sh(text) { return "'" + text.replace(/'/g, "'\\''") + "'"; }

  function currentMessage() {
    var typed = form.elements.prompt.value.trim();
    if (typed) return typed;
    var sent = document.querySelectorAll("#pg-log .msg.user .text");  // else the last one sent
    return sent.length ? sent[sent.length - 1].textContent : "Hello!";
  }

  function requestBody() {
    var f = form.elements;
    var messages = [];
    if (f.system.value) messages.push({ role: "system", content: f.system.value });
    messages.push({ role: "user", content: currentMessage() });
    var body = { model: f.model.value, messages: messages };
    var temperature = parseFloat(f.temperature.value);
    if (isFinite(temperature)) body.temperature = temperature;
    var maxTokens = parseInt(f.max_tokens.value, 10);
    if (isFinite(maxTokens)) body.max_tokens = maxTokens;
    return body;
  }

  function python(body, base) {
    var lines = ["import os", "", "from openai import OpenAI", "",
                 "client = OpenAI(base_url=" + py(base) + ", api_key=os.environ[\"KYMA_API_KEY\"])",
                 "reply = client.chat.completions.create(",
                 "    model=" + py(body.model) + ",",
                 "    messages=["];
    body.messages.forEach(function (m) {
      lines.push("        {\"role\": " + py(m.role) + ", \"content\": " + py(m.content) + "},");
    });
    lines.push("    ],");
    if ("temperature" in body) lines.push("    temperature=" + body.temperature + ",");
    if ("max_tokens" in body) lines.push("    max_tokens=" + body.max_tokens + ",");
    lines.push(")", "print(reply.choices[0].message.content)");
    return lines.join("\n");
  }

  function curl(body, base) {
    return ["curl -sS " + sh(base + "/chat/completions") + " \\",
            "  -H \"Authorization: Bearer $KYMA_API_KEY\" \\",
            "  -H 'Content-Type: application/json' \\",
            "  -d " + sh(JSON.stringify(body, null, 2))].join("\n");
  }

  opener.addEventListener("click", function () {
    var body = requestBody();
    var base = dialog.dataset.base;
    document.getElementById("pg-code-python").textContent = python(body, base);
    document.getElementById("pg-code-curl").textContent = curl(body, base);
    var note = document.getElementById("pg-code-compare");
    note.hidden = !form.elements.compare_on.checked;  // compared: the second side differs only in its model
    note.textContent = "Compare is on: the second model's call is the same with model=" +
      JSON.stringify(form.elements.compare.value) + ".";
    dialog.showModal();  // modal: Escape closes it, focus stays inside while open
  });
  document.getElementById("pg-code-close").addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("close", function () { opener.focus(); });  // back where the reader was
})();
