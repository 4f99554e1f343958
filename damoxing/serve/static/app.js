// The damoxing playground: plain JavaScript over the server's own OpenAI-compatible API (no build step, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
let modelName = null;
let history = [];  // the conversation: {role, content}
let controller = null;  // aborts the running chat request

function headers() {
  const h = { "content-type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function api(path, body) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data;
}

function openTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== `panel-${name}`;
}

async function start() {
  $("api-key").value = localStorage.getItem("damoxing-api-key") || "";
  $("api-key").addEventListener("change", () => { localStorage.setItem("damoxing-api-key", $("api-key").value); start(); });
  const response = await fetch("/v1/models", { headers: headers() });
  const data = await response.json();
  if (!response.ok) { showError(data.error ? data.error.message : "cannot list the models"); return; }
  showError("");
  const model = data.data[0];
  modelName = model.id;
  $("model-name").textContent = modelName;
  const can = model.capabilities || {};
  const tabs = { chat: can.chat, classify: can.classify, embeddings: can.embeddings };
  let first = null;
  for (const [name, shown] of Object.entries(tabs)) {
    $(`tab-${name}`).hidden = !shown;
    if (shown && !first) first = name;
  }
  if (first) openTab(first);
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  div.textContent = text;
  $("messages").appendChild(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

function number(id) {
  const value = $(id).value;
  return value === "" ? undefined : Number(value);
}

async function sendChat(event) {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || controller) return;
  $("prompt").value = "";
  showError("");
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.classList.add("streaming");
  const system = $("system").value.trim();
  const body = {
    model: modelName, stream: true, stream_options: { include_usage: true },
    messages: system ? [{ role: "system", content: system }, ...history] : history,
    max_tokens: number("max-tokens"), temperature: number("temperature"), top_p: number("top-p"),
    top_k: number("top-k"), min_p: number("min-p"), seed: number("seed"),
  };
  controller = new AbortController();
  $("send").disabled = true; $("stop").disabled = false;
  const started = performance.now();
  let firstToken = null, usage = null;
  try {
    const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(),
                                                           body: JSON.stringify(body), signal: controller.signal });
    if (!response.ok) {
      const data = await response.json();
      throw new Error(data.error ? data.error.message : response.statusText);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 2);
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
        if (delta) {
          if (firstToken === null) firstToken = performance.now() - started;
          reply.textContent += delta;
          $("messages").scrollTop = $("messages").scrollHeight;
        }
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") showError(error.message);
  } finally {
    reply.classList.remove("streaming");
    history.push({ role: "assistant", content: reply.textContent });
    controller = null;
    $("send").disabled = false; $("stop").disabled = true;
    const seconds = (performance.now() - started) / 1000;
    if (usage) {
      $("chat-stats").textContent = `${usage.completion_tokens} tokens in ${seconds.toFixed(2)} s ` +
        `(${(usage.completion_tokens / seconds).toFixed(1)} tokens/s; first token after ${(firstToken || 0).toFixed(0)} ms)`;
    }
  }
}

async function classify() {
  showError("");
  const texts = $("classify-input").value.split("\n").map((t) => t.trim()).filter(Boolean);
  if (!texts.length) return;
  try {
    const data = await api("/v1/classify", { model: modelName, input: texts });
    const table = $("classify-output");
    table.innerHTML = "<tr><th>text</th><th>label</th><th>probability</th></tr>";
    for (const row of data.data) {
      const tr = table.insertRow();
      tr.insertCell().textContent = texts[row.index];
      tr.insertCell().textContent = row.label;
      tr.insertCell().textContent = row.probability !== undefined ? row.probability.toFixed(3) : "";
    }
  } catch (error) { showError(error.message); }
}

async function explain() {  // the first line: which tokens made the classifier predict what it did
  showError("");
  const text = $("classify-input").value.split("\n").map((t) => t.trim()).find(Boolean);
  if (!text) return;
  try {
    const data = await api("/v1/explain", { model: modelName, input: text });
    const scale = Math.max(...data.scores.map(Math.abs)) || 1;
    const box = $("explain-tokens");
    box.innerHTML = "";
    data.tokens.forEach((token, i) => {
      const span = document.createElement("span");
      const s = data.scores[i];
      span.textContent = token;
      span.title = `${token}: ${s.toFixed(4)}`;
      const alpha = (Math.min(Math.abs(s) / scale, 1) * 0.85).toFixed(3);
      const rgb = s > 0 ? "22, 163, 74" : "220, 38, 38";  // green for the label, red against it
      span.style.background = s === 0 ? "transparent" : `rgba(${rgb}, ${alpha})`;
      box.appendChild(span);
    });
    const delta = data.delta.toExponential(2);
    $("explain-summary").textContent =
      `${data.label} (${data.probability.toFixed(3)}): green for it, red against; captum's delta ${delta}`;
    $("explain-output").hidden = false;
  } catch (error) { showError(error.message); }
}

async function similarity() {
  showError("");
  const texts = $("embed-input").value.split("\n").map((t) => t.trim()).filter(Boolean);
  if (texts.length < 2) { showError("give two or more sentences, one per line"); return; }
  try {
    const data = await api("/v1/embeddings", { model: modelName, input: texts, encoding_format: "float" });
    const vectors = data.data.map((d) => d.embedding);
    const table = $("embed-output");
    table.innerHTML = "";
    const head = table.insertRow();
    head.insertCell();
    texts.forEach((t, i) => { head.insertCell().textContent = `#${i + 1}`; });
    vectors.forEach((a, i) => {
      const tr = table.insertRow();
      tr.insertCell().textContent = `#${i + 1} ${texts[i]}`;
      vectors.forEach((b) => {  // the vectors are normalised: the dot product is the cosine
        tr.insertCell().textContent = a.reduce((s, x, k) => s + x * b[k], 0).toFixed(3);
      });
    });
  } catch (error) { showError(error.message); }
}

for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => openTab(tab.dataset.tab));
$("chat-form").addEventListener("submit", sendChat);
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("chat-form").requestSubmit(); }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("reset").addEventListener("click", () => { history = []; $("messages").innerHTML = ""; $("chat-stats").textContent = ""; });
$("classify-run").addEventListener("click", classify);
$("explain-run").addEventListener("click", explain);
$("embed-run").addEventListener("click", similarity);
start();
