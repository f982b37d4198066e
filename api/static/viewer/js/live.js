// The live stream GET /stream (Server-Sent Events: event, event_status, alarm, position, heartbeat).
// Read with fetch() instead of EventSource so the bearer token goes in the Authorization header
// (EventSource cannot send headers, and a token in the URL would end up in logs); reconnects
// with exponential back-off and resumes with Last-Event-ID. One connection per page, shared.

import { getToken, onUnauthorized } from "./auth.js";

const listeners = new Map(); // type → Set(fn)
const stateListeners = new Set();
let controller = null;
let lastEventId = null;
let state = "idle";
let started = false;
let generation = 0; // each run() loop belongs to one generation; restarts end older loops

/** Subscribe to messages of `type` ("*" for all): fn(data, {type, id}). Returns an unsubscribe fn. */
export function on(type, fn) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type).delete(fn);
}

/** fn(state) with state "connecting" | "open" | "lost" | "denied" | "closed". */
export function onState(fn) {
  stateListeners.add(fn);
  fn(state);
  return () => stateListeners.delete(fn);
}

export const streamState = () => state;

function setState(next) {
  state = next;
  document.body.dataset.live = next;
  for (const fn of stateListeners) fn(next);
}

function dispatch(type, raw, id) {
  let data = raw;
  try { data = JSON.parse(raw); } catch { /* plain text payload */ }
  const meta = { type, id };
  for (const fn of listeners.get(type) ?? []) fn(data, meta);
  for (const fn of listeners.get("*") ?? []) fn(data, meta);
}

/** Feed text into an SSE parser; returns the unconsumed tail. */
function parseChunk(buffer, emit) {
  const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
  const tail = blocks.pop();
  for (const block of blocks) {
    let type = "message";
    const data = [];
    let id = null;
    for (const line of block.split(/\r\n|\n|\r/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (id !== null) lastEventId = id;
    if (data.length) emit(type, data.join("\n"), id);
  }
  return tail;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function run(gen) {
  const alive = () => started && gen === generation;
  let backoff = 500;
  while (alive()) {
    controller = new AbortController();
    setState("connecting");
    try {
      const headers = { Accept: "text/event-stream" };
      const token = getToken();
      if (token) headers.Authorization = `Bearer ${token}`;
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      const res = await fetch("/stream", { headers, cache: "no-store", signal: controller.signal });
      if (res.status === 401 || res.status === 403) {
        setState("denied");
        // revoked or expired (the server ended the stream, the reconnect is refused): signed out
        if (res.status === 401) onUnauthorized();
        return; // restarted by the next sign-in
      }
      if (!res.ok || !res.body) throw new Error(`/stream → HTTP ${res.status}`);
      setState("open");
      backoff = 500;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = parseChunk(buffer + value, dispatch);
      }
    } catch (err) {
      if (!alive()) break;
      console.warn("live stream:", err.message || err);
    }
    if (!alive()) break;
    setState("lost");
    await sleep(backoff + Math.random() * 250);
    backoff = Math.min(backoff * 2, 10000);
  }
  if (gen === generation) setState("closed");
}

export function startStream() {
  if (started) return;
  started = true;
  generation += 1;
  run(generation);
}

export function stopStream() {
  started = false;
  controller?.abort();
}

/** Reconnect with the current token (after sign-in/out). */
export function restartStream() {
  stopStream();
  startStream();
}
