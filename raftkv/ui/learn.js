// raftkv: the learning page (/ui/learn). One picture of a Raft cluster, from
// two sources: a simulated cluster the learner steers, rewinds and forks
// (/ui/learn/sim/...), or the real cluster, slowed down (/ui/learn/live, a
// stream of frames of the same shape). No libraries, no external resources,
// relative URLs only: the page talks to the node that served it.
//
// A frame is one step of one server's Raft core (or one learner action) with
// every server's state after it and the messages in flight. The page keeps a
// clock T in the source's milliseconds: a message in flight is drawn at
// (T - sent) / (arrive - sent) of its way. Playing moves T on, slowly enough
// to follow, and moves to the next frame when T reaches its time; quiet
// stretches (nothing in flight) go by faster. The view (stage, logs,
// narration) is redrawn when the frame changes; only positions and timers
// move between frames, on elements that are kept and reused.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => Array.from(el.querySelectorAll(sel));
const SVGNS = "http://www.w3.org/2000/svg";
const API = "/ui/learn";
const VIEW_W = 760, VIEW_H = 600, CX = 380, CY = 305;
const BASE_RATE = 0.03;      // source ms per real ms at 1x: a 20 ms message takes 2/3 s
const MIN_DWELL = 420;       // real ms each frame stays on screen at 1x
const LIVE_BEHIND = 12;       // live frames waiting before playback speeds up to catch up
const LIVE_SKIP = 240;        // ... and so many that the page skips ahead to LIVE_BEHIND * 4 behind
const LOOKAHEAD = 2;         // frames read ahead of the view while playing the newest ones
const UNSEEN_OK = 3;         // acting at the newest frame seen: frames read ahead but unseen, at most
const KEEP_LIVE = 6000;      // live frames kept
// Okabe-Ito, a palette for every kind of colour vision; each term also shows its number
const TERM_FILL = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#555555"];
const TERM_INK = ["#fff", "#000", "#000", "#000", "#000", "#000", "#000", "#fff"];
const OK = "#009E73", NO = "#D55E00";
const PAPER = "In Search of an Understandable Consensus Algorithm (extended version), Ongaro & Ousterhout";

// ---------------------------------------------------------------- state

let source = "sim";
const sim = { id: null, summary: null, count: 0, ended: null, branch: 0, frames: [], gen: 0, loading: null,
              viewed: new Map(), kept: new Map(), lesson: null, stops: [], stop: -1, busy: false,
              branchesKey: "", seed: null };
const live = { frames: [], base: 0, es: null, delivered: new Map(), note: "", error: false, members: new Map() };
const view = { k: 0, T: 0, playing: true, speed: 1, dwell: 0, dirty: true, want: null, last: 0,
               selected: null, pop: null, layoutKey: "", pos: new Map(), R: 44,
               nodeEls: new Map(), msgEls: new Map(), ghostEls: new Map(), trackEls: new Map(), cutEls: new Map(),
               motionKey: "", lastUp: new Map(), narrKey: "", logsKey: "", clientsKey: "", hclogKey: "",
               termKey: "" };

// ---------------------------------------------------------------- helpers

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function svg(tag, attrs) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}
function setAttr(el, name, value) {
  const v = value === null || value === undefined ? null : String(value);
  if (v === null) { if (el.hasAttribute(name)) el.removeAttribute(name); }
  else if (el.getAttribute(name) !== v) el.setAttribute(name, v);
}
function setText(el, text) { if (el.textContent !== text) el.textContent = text; }
function termFill(t) { return t ? TERM_FILL[(t - 1) % TERM_FILL.length] : "#cccccc"; }
function termInk(t) { return t ? TERM_INK[(t - 1) % TERM_INK.length] : "#000"; }
function say(text, isError) {
  const el = $("#say");
  el.textContent = text || "";
  el.classList.toggle("error", !!isError);
}
function banner(text, isError) {
  const el = $("#banner");
  el.hidden = !text;
  el.textContent = text || "";
  el.classList.toggle("error", !!isError);
}
async function call(method, path, body) {
  const opts = { method, cache: "no-store", headers: {} };
  if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const resp = await fetch(path, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const err = new Error((data && data.error) || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// ---------------------------------------------------------------- frames of the current source

function frame(i) {
  if (source === "sim") return sim.frames[i];
  return live.frames[i - live.base];
}
function firstIndex() { return source === "sim" ? 0 : live.base; }
function count() { return source === "sim" ? sim.count : live.base + live.frames.length; }

async function fetchFrames(from, n) {
  const gen = sim.gen;
  const r = await call("GET", `${API}/sim/${encodeURIComponent(sim.id)}/frames?from=${from}&count=${n}`);
  if (gen !== sim.gen) return;
  for (const f of r.frames) sim.frames[f.i] = f;
  applySummary(r.summary);
  evict();
  view.dirty = true;
}

// Frame i of the simulated branch in the cache, read (or made) if need be.
// Past the branch's end the server makes more frames: only a few, so that
// acting at the newest frame the learner saw rarely has to fork.
async function ensure(i, ahead) {
  for (let tries = 0; tries < 4; tries++) {
    if (sim.frames[i]) return true;
    if (!sim.id) return false;
    if (sim.loading) { await sim.loading.catch(() => {}); continue; }
    let from, n;
    if (i < sim.count) {
      from = Math.max(0, i - 60);
      while (from < i && sim.frames[from]) from++;
      n = Math.min(240, sim.count - from);
    } else {
      if (sim.ended) return false;
      from = sim.count;
      n = i - sim.count + 1 + (ahead || 0);
    }
    sim.loading = fetchFrames(from, n).finally(() => { sim.loading = null; });
    try { await sim.loading; } catch (e) { say(`reading frames: ${e.message}`, true); return false; }
  }
  return !!sim.frames[i];
}

// Read the first frame missing in the next LOOKAHEAD (an action's answer
// may hold fewer frames than the server made), and the rest with it.
function requestAhead() {
  if (source !== "sim" || sim.loading || sim.busy || !sim.id) return;
  const horizon = view.k + LOOKAHEAD;
  let want = view.k + 1;
  while (want <= horizon && sim.frames[want]) want++;
  if (want > horizon) return;
  if (want >= sim.count && sim.ended) return;
  ensure(want, horizon - want);
}

let evictCheck = 0;
function evict() {
  if (++evictCheck % 20) return;
  const keys = Object.keys(sim.frames);
  if (keys.length < 9000) return;
  for (const key of keys) if (Math.abs(Number(key) - view.k) > 3000) delete sim.frames[key];
}

function applySummary(s) {
  if (!s) return;
  sim.summary = s;
  sim.count = s.frames;
  sim.ended = s.ended;
  sim.branch = s.branch;
  const key = JSON.stringify(s.branches) + s.branch;
  if (key !== sim.branchesKey) { sim.branchesKey = key; renderBranches(); }
}

// ---------------------------------------------------------------- moving about

function goTo(i, opts) {
  const n = count();
  if (!n) { view.dirty = true; return; }
  i = Math.max(firstIndex(), Math.min(i, n - 1));
  const f = frame(i);
  if (!f) {
    view.want = i;
    if (source === "sim") ensure(i).then(ok => { if (ok && view.want === i) goTo(i, opts); });
    return;
  }
  view.want = null;
  view.k = i;
  view.T = f.t;
  view.dwell = 0;
  view.dirty = true;
  if (source === "sim") {
    const seen = sim.viewed.get(sim.branch);
    if (seen === undefined || seen < i) sim.viewed.set(sim.branch, i);
    sim.kept.set(sim.branch, i);
  }
  if (!(opts && opts.keepStop)) lessonLeftStop();
}

function setPlaying(on) {
  view.playing = !!on;
  view.dwell = 0;
  const b = $("#play");
  b.innerHTML = on ? "<span class=\"bars\" aria-hidden=\"true\"></span> Pause" : "&#x25B6; Play";
  b.setAttribute("aria-label", on ? "Pause" : "Play");
  document.body.dataset.playing = on ? "true" : "false";
}
function togglePlay() { setPlaying(!view.playing); }
function stepBy(d) {
  setPlaying(false);
  const i = view.k + d;
  if (source === "sim" && d > 0 && !sim.frames[i]) {
    ensure(i, 0).then(ok => { if (ok) goTo(i); else if (sim.ended) say(`this timeline has ended: ${sim.ended}`); });
    return;
  }
  goTo(i);
}
function setSpeed(v) {
  view.speed = v;
  const sel = $("#speed");
  if (Number(sel.value) !== v) sel.value = String(v);
}
function speedBy(d) {
  const opts = Array.from($("#speed").options).map(o => Number(o.value));
  const at = Math.max(0, opts.indexOf(view.speed));
  setSpeed(opts[Math.max(0, Math.min(opts.length - 1, at + d))]);
}

function advance(dt) {
  const cur = frame(view.k);
  if (!cur) return;
  const next = frame(view.k + 1);
  view.dwell += dt;
  if (!next) {
    if (source === "sim") {
      if (view.k + 1 >= sim.count && sim.ended) {
        setPlaying(false);
        say(`This timeline has ended: ${sim.ended}`);
      } else requestAhead();
    }
    return;
  }
  // the live cluster does not wait for the page: the further behind, the
  // faster it plays, so the view stays within a few seconds of the cluster
  if (source === "live" && count() - 1 - view.k > LIVE_SKIP) {
    say(`skipped ahead ${count() - 1 - view.k - LIVE_BEHIND * 4} frames to keep up with the cluster`);
    goTo(count() - 1 - LIVE_BEHIND * 4);
    return;
  }
  const hurry = source === "live" ? Math.max(1, (count() - 1 - view.k) / LIVE_BEHIND) : 1;
  let rate = BASE_RATE * view.speed * hurry;
  const gap = next.t - view.T;
  if (!cur.flight.length && gap > 40) rate = Math.max(rate * 6, gap / 1200);   // nothing in flight: hurry on
  view.T = Math.min(Math.max(next.t, view.T), view.T + dt * rate);
  if (view.T >= next.t && view.dwell >= MIN_DWELL / view.speed / hurry) {
    goTo(view.k + 1);
    if (source === "live" && live.frames.length) view.dirty = true;
  }
  if (source === "sim") requestAhead();
}

function loop(now) {
  const dt = view.last ? Math.min(250, now - view.last) : 16;
  view.last = now;
  if (view.playing) advance(dt);
  if (view.dirty) renderFrame();
  renderMotion();
  requestAnimationFrame(loop);
}

// ---------------------------------------------------------------- the simulator

async function newSim(opts) {
  const body = { nodes: Number($("#node-count").value) || 3 };
  if (opts && opts.seed !== undefined && opts.seed !== null) body.seed = opts.seed;
  if (opts && opts.pre_vote !== undefined) body.pre_vote = opts.pre_vote;
  say("starting a simulated cluster…");
  let r;
  try { r = await call("POST", `${API}/sim`, body); } catch (e) { say(`new simulation: ${e.message}`, true); return; }
  startWorld(r, null);
  say(`A simulated cluster of ${body.nodes} servers (seed ${r.summary.seed}). Click a server to steer it.`);
}

function startWorld(r, lesson) {
  sim.gen++;
  sim.id = r.id;
  sim.frames = [];
  sim.viewed = new Map();
  sim.kept = new Map();
  sim.branchesKey = "";
  sim.lesson = lesson ? r.lesson : null;
  sim.stops = lesson ? r.stops || [] : [];
  sim.stop = -1;
  sim.seed = r.summary.seed;
  applySummary(r.summary);
  resetStage();
  closePopover(false);
  $("#lesson").hidden = !lesson;
  $("#check-result").textContent = "";
  $("#check-result").className = "";
  if (lesson) {
    $("#lesson-title").textContent = r.lesson.title;
    showStop(0);
  } else {
    // a recorded failure opens at the step that broke: read upwards from there
    const rec = r.summary.recording;
    const at = rec && rec.broke_at !== null && rec.broke_at !== undefined ? rec.broke_at : 0;
    view.k = at;
    ensure(at, 3).then(() => goTo(at));
  }
}

// A run recorded elsewhere (raftkv lab open): replayed, not steered.
async function openRecording(id) {
  let s;
  try { s = await call("GET", `${API}/sim/${encodeURIComponent(id)}`); }
  catch (e) { say(`recording: ${e.message}`, true); return; }
  startWorld({ id, summary: s }, null);
  const rec = s.recording || {};
  const left = rec.skipped ? ` (the last ${s.frames} frames of the run)` : "";
  say(rec.invariant
    ? `Your ${rec.function} (${rec.exercise}, ${rec.where}) broke ${rec.invariant} at frame ${rec.broke_at}${left}. ` +
      "Step back from there: your calls are in the narration. This run is recorded: it cannot be steered."
    : `A recorded run of ${rec.exercise || "the lab"} (${rec.where || ""})${left}.`);
}

function leaderOf(f) {
  const n = f && f.nodes.find(x => x.up && x.role === "Leader");
  return n ? n.id : null;
}

// The frame to act right after: the one on screen. When the learner is at
// the newest frame they have seen and the page merely read a frame or two
// ahead of it, act after those instead (to the learner it is the same
// moment), so the timeline carries on rather than forking.
function actAfter(verb, message) {
  const k = view.k;
  const seen = sim.viewed.has(sim.branch) ? sim.viewed.get(sim.branch) : k;
  const last = sim.count - 1;
  if (seen <= k && last > k && last - k <= UNSEEN_OK) {
    if (verb !== "drop") return last;
    const f = sim.frames[last];
    if (f && f.flight.some(m => m.id === message)) return last;
  }
  return k;
}

async function act(verb, extra) {
  if (source !== "sim" || !sim.id) return false;
  if (sim.busy) { say("one moment: the last action is still being carried out"); return false; }
  sim.busy = true;
  try {
    if (sim.loading) await sim.loading.catch(() => {});
    const after = actAfter(verb, extra && extra.message);
    const body = Object.assign({ at: after, verb, count: 1 }, extra || {});
    let r;
    try { r = await call("POST", `${API}/sim/${encodeURIComponent(sim.id)}/act`, body); }
    catch (e) { say(`${verb}: ${e.message}`, true); return false; }
    // the server acts later than asked when the frame asked for is the
    // first half of a step (its log writes in memory, not yet on disk)
    const taken = typeof r.after === "number" ? r.after : after;
    sim.gen++;
    sim.frames.length = Math.min(sim.frames.length, taken + 1);
    for (const f of r.frames) sim.frames[f.i] = f;
    applySummary(r.summary);
    if (r.forked) {
      sim.viewed.set(sim.branch, taken + 1);
      say(`You changed the past: timeline ${sim.branch} goes another way from frame ${taken}. ` +
          `Timeline ${branchParent()} is kept (see Timelines).`);
    } else say("");
    goTo(taken + 1);
    return true;
  } finally {
    sim.busy = false;
  }
}

function branchParent() {
  const b = sim.summary && sim.summary.branches.find(x => x.id === sim.branch);
  return b && b.parent !== null ? b.parent : 0;
}

async function switchBranch(b) {
  if (!sim.id || b === sim.branch) return;
  const keepK = sim.kept.get(b);
  let s;
  try { s = await call("POST", `${API}/sim/${encodeURIComponent(sim.id)}/branch`, { branch: b }); }
  catch (e) { say(`timeline ${b}: ${e.message}`, true); return; }
  sim.gen++;
  sim.frames = [];
  applySummary(s);
  setPlaying(false);
  const target = keepK !== undefined ? Math.min(keepK, s.frames - 1) : s.frames - 1;
  await ensure(target);
  goTo(target);
  say(`Back on timeline ${b}, at frame ${target}.`);
}

// ---------------------------------------------------------------- lessons

let lessonsLoaded = 0;
async function loadLessons(force) {
  if (!force && Date.now() - lessonsLoaded < 3000) return;
  lessonsLoaded = Date.now();
  let r;
  try { r = await call("GET", `${API}/lessons`); } catch (e) { return; }
  const sel = $("#lesson-pick");
  const lessons = r.lessons || [];
  const key = JSON.stringify(lessons.map(l => l.name));
  if (sel.dataset.key === key) return;
  sel.dataset.key = key;
  const keep = sel.value;
  sel.innerHTML = lessons.length
    ? lessons.map(l => `<option value="${esc(l.name)}" title="${esc(l.summary || "")}">${esc(l.title || l.name)}</option>`).join("")
    : `<option value="">(no lessons yet)</option>`;
  if (keep && lessons.some(l => l.name === keep)) sel.value = keep;
  $("#lesson-start").disabled = !lessons.length;
}

async function startLesson(name) {
  if (!name) return;
  setSource("sim");
  say("building the lesson…");
  let r;
  try { r = await call("POST", `${API}/sim`, { lesson: name }); } catch (e) { say(`lesson: ${e.message}`, true); return; }
  startWorld(r, true);
  say("");
}

function showStop(s) {
  if (!sim.stops.length) return;
  s = Math.max(0, Math.min(s, sim.stops.length - 1));
  sim.stop = s;
  const stop = sim.stops[s];
  setPlaying(false);
  $("#stop-pos").textContent = `stop ${s + 1} of ${sim.stops.length} · frame ${stop.frame}`;
  $("#stop-title").textContent = stop.title;
  $("#stop-text").textContent = stop.text;
  $("#stop-back").disabled = s === 0;
  $("#stop-next").disabled = s === sim.stops.length - 1;
  $("#check").hidden = !stop.try_it;
  $("#lesson").classList.remove("away");
  view.want = stop.frame;
  ensure(stop.frame).then(ok => { if (ok && view.want === stop.frame && sim.stop === s) goTo(stop.frame, { keepStop: true }); });
  if (sim.frames[stop.frame]) goTo(stop.frame, { keepStop: true });
}

function lessonLeftStop() {
  if (!sim.lesson || sim.stop < 0) return;
  const stop = sim.stops[sim.stop];
  const at = stop && stop.frame === view.k;
  $("#stop-pos").textContent = `stop ${sim.stop + 1} of ${sim.stops.length} · frame ${stop.frame}` +
    (at ? "" : ` (you are at frame ${view.k})`);
}

async function check() {
  const out = $("#check-result");
  out.textContent = "checking…";
  out.className = "";
  try {
    const r = await call("GET", `${API}/sim/${encodeURIComponent(sim.id)}/check`);
    out.textContent = (r.passed ? "\u2713 " : "\u2717 ") + r.message;
    out.className = r.passed ? "pass" : "fail";
  } catch (e) {
    out.textContent = `check: ${e.message}`;
    out.className = "fail";
  }
}

// ---------------------------------------------------------------- the live cluster

async function startLive() {
  if (live.es) return;
  liveStatus("connecting to the live cluster…");
  try {
    const ctl = new AbortController();
    const resp = await fetch(liveURL(), { cache: "no-store", signal: ctl.signal,
                                                headers: { Accept: "text/event-stream" } });
    ctl.abort();
    if (!resp.ok) {
      liveStatus(resp.status === 404
        ? "Live source not available: this node does not serve /ui/learn/live (HTTP 404). Use the Simulator."
        : `Live source not available: HTTP ${resp.status}.`, true);
      return;
    }
  } catch (e) {
    if (e.name !== "AbortError") { liveStatus(`Live source not available: ${e.message}`, true); return; }
  }
  if (source !== "live" || live.es) return;
  const es = new EventSource(liveURL());
  live.es = es;
  const parse = e => { try { return JSON.parse(e.data); } catch (err) { return null; } };
  es.addEventListener("frame", e => { const f = parse(e); if (f) addLiveFrame(f); });
  es.addEventListener("hello", e => {
    const h = parse(e) || {};
    live.members = new Map((h.members || []).map(m => [m, live.members.get(m) || null]));
    liveStatus(`connected through ${h.node || "this node"}: ${(h.members || []).join(", ")}` +
               (h.heartbeats === false ? " (heartbeats hidden)" : ""));
  });
  es.addEventListener("member", e => {
    const m = parse(e);
    if (!m) return;
    live.members.set(m.id, m.up ? null : (m.why || "unreachable"));
    renderMembers();
  });
  es.addEventListener("skipped", e => {
    const m = parse(e);
    if (m) say(`${m.skipped} steps of ${m.node} were lost on the way (the stream fell behind)`, true);
  });
  es.onopen = () => { if (!live.note.startsWith("connected")) liveStatus("connected: frames arrive as the servers work"); };
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      liveStatus("the live stream closed; press Live cluster again to reconnect", true);
      live.es = null;
    } else liveStatus("the live stream broke off; reconnecting…", true);
  };
}

function liveURL() { return `${API}/live` + ($("#live-hb").checked ? "" : "?heartbeats=0"); }

function renderMembers() {
  const bad = Array.from(live.members).filter(([, why]) => why);
  const el = $("#live-members");
  el.textContent = bad.length ? "not heard from: " + bad.map(([id, why]) => `${id} (${why})`).join("; ") : "";
}

function stopLive() {
  if (live.es) { live.es.close(); live.es = null; }
}

function liveStatus(text, isError) {
  live.note = text;
  live.error = !!isError;
  const el = $("#live-status");
  el.textContent = text;
  el.classList.toggle("error", !!isError);
  if (source === "live") banner(isError ? text : "", isError);
  view.dirty = true;
}

function addLiveFrame(f) {
  const wasEmpty = !live.frames.length;
  live.frames.push(f);
  if (f.delivered !== null && f.delivered !== undefined) live.delivered.set(f.delivered, f.t);
  if (live.frames.length > KEEP_LIVE) {
    const drop = 1000;
    live.frames.splice(0, drop);
    live.base += drop;
    if (live.delivered.size > 50000) live.delivered.clear();
    if (source === "live" && view.k < live.base) goTo(live.base);
  }
  if (source === "live") {
    if (wasEmpty) goTo(live.base);
    renderBuffered();
  }
}

function renderBuffered() {
  if (source !== "live") return;
  const n = count();
  const behind = n ? n - 1 - view.k : 0;
  const cur = frame(view.k), last = frame(n - 1);
  const secs = cur && last ? Math.max(0, (last.t - cur.t) / 1000) : 0;
  setText($("#buffered"), `${live.frames.length} frames buffered` +
          (behind > 0 ? `, ${behind} to go (${secs.toFixed(1)} s of the cluster's time behind)` : ", up to date"));
}

// The live cluster's controls go through the dashboard's relay to the
// member's /debug/faults: kill drops all its Raft traffic until resumed,
// pause drops it for a few seconds (as a stalled process would be), resume heals.
const PAUSE_S = 5;
async function liveFault(node, what) {
  const method = what === "resume" ? "DELETE" : "POST";
  const body = what === "kill" ? { drop: true } : what === "pause" ? { drop: true, duration_s: PAUSE_S } : null;
  try {
    const opts = { method, cache: "no-store", headers: {} };
    if (body) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
    const resp = await fetch(`/ui/faults?node=${encodeURIComponent(node)}`, opts);
    let out = {};
    try { out = await resp.json(); } catch (e) { out = {}; }
    if (!resp.ok) say(`${node}: HTTP ${resp.status}: ${out.error || "failed"}`, true);
    else say(what === "resume" ? `${node} resumed: its messages get through again`
             : what === "kill" ? `${node} killed: nothing it sends or receives gets through until you resume it`
             : `${node} paused for ${PAUSE_S} s: nothing it sends or receives gets through`);
  } catch (e) {
    say(`${node}: ${e.message}`, true);
  }
}

async function liveTransfer(node) {
  try {
    const r = await call("POST", `/transfer-leadership?to=${encodeURIComponent(node)}`);
    say(`leadership transferred from ${r.from}${r.to ? " to " + r.to : ""}`);
  } catch (e) { say(`transfer leadership: ${e.message}`, true); }
}

// ---------------------------------------------------------------- switching sources

function setSource(s) {
  if (s === source && document.body.dataset.source === s) return;
  source = s;
  document.body.dataset.source = s;
  $("#src-sim").setAttribute("aria-pressed", String(s === "sim"));
  $("#src-live").setAttribute("aria-pressed", String(s === "live"));
  resetStage();
  closePopover(false);
  banner("");
  say("");
  if (s === "live") {
    $("#lesson").hidden = true;
    view.k = live.base;
    if (live.frames.length) goTo(live.base + live.frames.length - 1);
    setPlaying(true);
    startLive();
    renderBuffered();
  } else {
    stopLive();
    $("#lesson").hidden = !sim.lesson;
    const k = sim.kept.get(sim.branch);
    goTo(k !== undefined ? k : 0);
  }
  view.dirty = true;
}

// ---------------------------------------------------------------- the stage: servers

function resetStage() {
  for (const m of [view.nodeEls, view.msgEls, view.ghostEls, view.trackEls, view.cutEls]) {
    for (const el of m.values()) el.remove();
    m.clear();
  }
  view.layoutKey = "";
  view.narrKey = view.logsKey = view.clientsKey = view.hclogKey = view.motionKey = "";
  view.dirty = true;
}

// Members in a circle; spare servers (not in the cluster) wait in a corner.
function layout(f) {
  const spare = sparesOf(f);
  const onRing = n => !spare.has(n.id);
  const ringIds = f.nodes.filter(onRing).map(n => n.id);
  const spares = f.nodes.filter(n => !onRing(n)).map(n => n.id);
  const ids = ringIds.concat(spares);
  const key = ringIds.join(",") + "|" + spares.join(",");
  if (key === view.layoutKey) return;
  view.layoutKey = key;
  const n = ringIds.length;
  const ring = n <= 2 ? 150 : n <= 4 ? 185 : n <= 6 ? 200 : 205;
  view.R = n <= 4 ? 46 : n <= 6 ? 42 : 38;
  view.pos.clear();
  ringIds.forEach((id, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    view.pos.set(id, { x: CX + ring * Math.cos(a), y: CY + ring * Math.sin(a) });
  });
  spares.forEach((id, i) => view.pos.set(id, { x: 70 + i * 110, y: VIEW_H - 80, spare: true }));
  for (const [id, g] of view.nodeEls) if (!view.pos.has(id)) { g.remove(); view.nodeEls.delete(id); }
  for (const id of ids) {
    const g = serverEl(id);
    const p = view.pos.get(id);
    g.setAttribute("transform", `translate(${p.x.toFixed(1)},${p.y.toFixed(1)})`);
    const R = view.R;
    g.querySelector(".body").setAttribute("r", R);
    g.querySelector(".timer-track").setAttribute("r", R + 7);
    const timer = g.querySelector(".timer");
    timer.setAttribute("r", R + 7);
    const c = 2 * Math.PI * (R + 7);
    timer.setAttribute("stroke-dasharray", c.toFixed(1));
    timer.dataset.c = c;
    g.querySelector(".cutoff").setAttribute("r", R + 15);
    g.querySelector(".ring").setAttribute("r", R + 20);
    g.querySelector(".id").setAttribute("y", -R * 0.22);
    g.querySelector(".role").setAttribute("y", R * 0.2);
    g.querySelector(".term").setAttribute("y", R * 0.52);
    // what sits outside the circle goes away from the centre
    const below = p.y >= CY - 5 || p.spare;
    g.querySelector(".below").setAttribute("y", below ? R + 30 : -R - 22);
    g.querySelector(".badge").setAttribute("y", below ? R + 46 : -R - 38);
  }
  for (const t of view.trackEls.values()) t.remove();
  view.trackEls.clear();
}

function serverEl(id) {
  let g = view.nodeEls.get(id);
  if (g) return g;
  g = svg("g", { class: "server", "data-node": id, tabindex: "0", role: "button" });
  g.append(svg("title"),
           svg("circle", { class: "ring" }),
           svg("circle", { class: "cutoff" }),
           svg("circle", { class: "timer-track" }),
           svg("circle", { class: "timer", transform: "rotate(-90)" }),
           svg("circle", { class: "body" }));
  const texts = [["id", 0, 0], ["role", 0, 0], ["term", 0, 0], ["below", 0, 0], ["badge", 0, 0]];
  for (const [cls] of texts) g.append(svg("text", { class: cls, "text-anchor": "middle" }));
  g.querySelector(".id").textContent = id;
  g.addEventListener("click", e => { e.stopPropagation(); openActions(id, false); });
  g.addEventListener("keydown", e => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); e.stopPropagation(); openActions(id, true); }
  });
  $("#servers").append(g);
  view.nodeEls.set(id, g);
  return g;
}

// The network at frame k, from the branch's actions up to there: the links
// cut ("a>b": what a sends b is lost) and the servers cut off from all others.
function linksAt(k, ids) {
  const blocked = new Set();
  const out = { blocked, isolated: new Set() };
  if (source !== "sim" || !sim.summary) return out;
  const b = sim.summary.branches.find(x => x.id === sim.branch);
  if (!b) return out;
  const all = ids || sim.summary.nodes || [];
  for (const a of b.actions) {
    if (a.at > k) continue;
    if (a.verb === "isolate") for (const x of all) { if (x !== a.node) { blocked.add(`${a.node}>${x}`); blocked.add(`${x}>${a.node}`); } }
    else if (a.verb === "heal") {
      if (!a.node) blocked.clear();
      else for (const key of Array.from(blocked)) { const [x, y] = key.split(">"); if (x === a.node || y === a.node) blocked.delete(key); }
    } else if (a.verb === "block") blocked.add(`${a.node}>${a.to}`);
    else if (a.verb === "unblock") blocked.delete(`${a.node}>${a.to}`);
  }
  for (const x of all) {
    if (all.length > 1 && all.every(y => y === x || (blocked.has(`${x}>${y}`) && blocked.has(`${y}>${x}`)))) out.isolated.add(x);
  }
  return out;
}
function linkCut(links, a, b) { return links.blocked.has(`${a}>${b}`) || links.blocked.has(`${b}>${a}`); }

// the cut links, drawn as red dashed lines (a server cut off from all gets a ring instead)
function renderCuts(f, links) {
  const want = new Map();
  const ids = f.nodes.map(n => n.id);
  for (let i = 0; i < ids.length; i++) {
    for (let j = i + 1; j < ids.length; j++) {
      const a = ids[i], b = ids[j];
      if (!linkCut(links, a, b) || links.isolated.has(a) || links.isolated.has(b)) continue;
      const ab = links.blocked.has(`${a}>${b}`), ba = links.blocked.has(`${b}>${a}`);
      want.set(`${a}|${b}`, [a, b, ab && ba ? "" : ab ? `${a}\u2192${b} cut` : `${b}\u2192${a} cut`]);
    }
  }
  for (const [key, el] of view.cutEls) if (!want.has(key)) { el.remove(); view.cutEls.delete(key); }
  for (const [key, [a, b, one]] of want) {
    let g = view.cutEls.get(key);
    if (!g) {
      g = svg("g", { class: "cut", "data-cut": key });
      g.append(svg("line"), svg("text", { "text-anchor": "middle" }));
      $("#cuts").append(g);
      view.cutEls.set(key, g);
    }
    const p = view.pos.get(a), q = view.pos.get(b);
    if (!p || !q) continue;
    const line = g.querySelector("line");
    setAttr(line, "x1", p.x.toFixed(1)); setAttr(line, "y1", p.y.toFixed(1));
    setAttr(line, "x2", q.x.toFixed(1)); setAttr(line, "y2", q.y.toFixed(1));
    const t = g.querySelector("text");
    setAttr(t, "x", ((p.x + q.x) / 2).toFixed(1)); setAttr(t, "y", ((p.y + q.y) / 2 - 6).toFixed(1));
    setText(t, "\u2702 " + (one || "link cut"));
  }
}
function membersOf(f) {
  const m = new Map();
  for (const n of f.nodes) if (n.up && n.members) for (const [id, s] of n.members) if (!m.has(id) || s === "voter") m.set(id, s);
  return m;
}
// servers that are down and in no configuration: the simulator's spares
function sparesOf(f) {
  const members = membersOf(f);
  const known = members.size ? members : new Map(((source === "sim" && sim.summary && sim.summary.voters) || []).map(v => [v, "voter"]));
  const out = new Set();
  if (!known.size) return out;
  for (const n of f.nodes) if (!n.up && !known.has(n.id)) out.add(n.id);
  return out;
}
// what a down server's disk holds: the simulator says so in the view ("disk");
// for the live cluster, the last frame before k where it was up
function lastUp(id, k) {
  const here = frame(k) && frame(k).nodes.find(x => x.id === id);
  if (here && here.disk) return here.disk;
  const key = `${id}@${k}`;
  if (view.lastUp.has(key)) return view.lastUp.get(key);
  let found = null;
  for (let i = k - 1; i >= Math.max(firstIndex(), k - 600); i--) {
    const f = frame(i);
    if (!f) continue;
    const n = f.nodes.find(x => x.id === id);
    if (n && n.up) { found = n; break; }
  }
  view.lastUp.set(key, found);
  return found;
}

function renderServers(f) {
  const links = linksAt(view.k, f.nodes.map(n => n.id));
  const cut = links.isolated;
  renderCuts(f, links);
  const members = membersOf(f);
  const spares = sparesOf(f);
  for (const n of f.nodes) {
    const g = serverEl(n.id);
    const up = !!n.up;
    const suffrage = up ? n.suffrage : (members.get(n.id) || "none");
    const spare = spares.has(n.id);
    setAttr(g, "data-role", n.role);
    setAttr(g, "data-term", up ? n.term : "");
    setAttr(g, "data-up", up);
    setAttr(g, "data-suffrage", suffrage);
    setAttr(g, "data-spare", spare);
    setAttr(g, "data-cut", cut.has(n.id));
    setAttr(g, "data-selected", view.selected === n.id);
    setText(g.querySelector(".role"), up ? n.role : spare ? "spare" : "down");
    const disk = up ? null : lastUp(n.id, view.k);
    setText(g.querySelector(".term"), up ? `term ${n.term}` : disk ? `term ${disk.term}` : "");
    let below;
    if (up) {
      below = n.role === "Leader" ? `leader · commit ${n.commit}` :
        `vote: ${n.vote || "none"}` + (n.leader ? ` · leader ${n.leader}` : "");
    } else below = spare ? "not in the cluster" : disk ? `down · on disk: vote ${disk.vote || "none"}` : "down";
    setText(g.querySelector(".below"), below);
    const badges = [];
    if (n.role === "Leader") badges.push("\u2605 LEADER");
    if (n.role === "Candidate") badges.push(n.pre_vote ? "asking for pre-votes" : "asking for votes");
    if (cut.has(n.id)) badges.push("cut off");
    if (suffrage === "nonvoter") badges.push("nonvoter");
    if (up && suffrage === "none" && members.size) badges.push("not a member");
    if (up && n.guard) badges.push("guard: " + n.guard);
    setText(g.querySelector(".badge"), badges.join(" · "));
    const timerText = up && n.timer ? `, election timer ends at ${fmtT(n.timer[1])}` : "";
    const label = up
      ? `${n.id}: ${n.role}${n.pre_vote ? " (pre-vote round)" : ""}, term ${n.term}, voted for ${n.vote || "nobody"}${n.leader ? ", knows leader " + n.leader : ""}, ` +
        `log ${n.last} entries, commit ${n.commit}${timerText}${cut.has(n.id) ? ", cut off" : ""}. Enter: its actions.`
      : `${n.id}: ${spare ? "spare, not in the cluster" : "down"}. Enter: its actions.`;
    setAttr(g, "aria-label", label);
    setText(g.querySelector("title"), label);
  }
}

function fmtT(t) {
  if (source === "live") {
    const d = new Date(t);
    return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }
  return `${(t / 1000).toFixed(3)} s`;
}

// ---------------------------------------------------------------- the stage: messages

const SHORT = { AppendEntries: "AE", AppendEntriesResponse: "AE reply", RequestVote: "RV", RequestVoteResponse: "RV reply",
                InstallSnapshot: "snapshot", InstallSnapshotResponse: "snapshot reply", TimeoutNow: "TimeoutNow" };

function kindOf(m) {
  if (m.type === "AppendEntries") return m.heartbeat ? "hb" : "ae";
  if (m.type === "AppendEntriesResponse") return m.heartbeat ? "hbr" : "aer";
  if (m.type === "RequestVote") return m.pre_vote ? "prv" : "rv";
  if (m.type === "RequestVoteResponse") return "rvr";
  if (m.type === "InstallSnapshot") return "is";
  if (m.type === "InstallSnapshotResponse") return "isr";
  if (m.type === "TimeoutNow") return "tn";
  return "other";
}

function stageLabel(m) {
  const k = kindOf(m);
  if (k === "hb") return m.read_seq ? `heartbeat, read round ${m.read_seq}` : "heartbeat";
  if (k === "hbr") return m.read_seq ? `\u2665 ok, read round ${m.read_seq}` : "\u2665 ok";
  return m.label || SHORT[m.type] || m.type;
}

function describe(m) {
  const base = `${m.type} from ${m.from} to ${m.to}`;
  const bits = [m.label];
  if (m.type === "AppendEntries") {
    bits.push(`term ${m.term}`, `prev ${m.prev[0]}@t${m.prev[1]}`, `${m.count} entries`, `leader commit ${m.commit}`);
  } else if (m.term !== undefined) bits.push(`term ${m.term}`);
  return `${base}: ${bits.filter(Boolean).join(", ")}`;
}

function shapeFor(m) {
  const g = svg("g", { class: "tok" });
  const k = kindOf(m);
  // an arrowhead in front, pointing the way the message goes (the token is rotated)
  const head = svg("path", { d: "M9,-5 L16,0 L9,5 Z", fill: "#333" });
  let body;
  if (k === "ae") {
    body = svg("rect", { x: -10, y: -7, width: 20, height: 14, rx: 2, fill: "#0072B2", class: "shape" });
    g.append(body, head);
    const n = Math.min(m.count || 0, 4);
    for (let i = 0; i < n; i++) g.append(svg("rect", { x: -8 + i * 4.2, y: -4, width: 3, height: 8, fill: "#fff" }));
    return g;
  }
  if (k === "hb") {
    body = svg("path", { d: "M0,6 C-9,0 -8,-7 -3,-6 C-1,-6 0,-4 0,-3 C0,-4 1,-6 3,-6 C8,-7 9,0 0,6 Z",
                         fill: m.read_seq ? "#CC79A7" : "#56B4E9", class: "shape" });
    g.append(body, head);
    return g;
  }
  if (k === "rv" || k === "prv") {
    body = svg("path", { d: "M0,-9 L9,0 L0,9 L-9,0 Z", fill: k === "rv" ? "#E69F00" : "#fff",
                         stroke: "#E69F00", "stroke-width": k === "rv" ? 1.5 : 3, class: "shape" });
    g.append(body, head);
    return g;
  }
  if (k === "is") {
    body = svg("rect", { x: -9, y: -9, width: 18, height: 18, rx: 2, fill: "#CC79A7", class: "shape" });
    g.append(body, svg("rect", { x: -4, y: -4, width: 8, height: 8, fill: "#fff" }), head);
    return g;
  }
  if (k === "tn") {
    body = svg("path", { d: "M2,-10 L-6,2 L0,2 L-2,10 L6,-2 L0,-2 Z", fill: "#D55E00", class: "shape" });
    g.append(body, head);
    return g;
  }
  // answers: a round token with a tick or a cross
  const yes = m.type === "RequestVoteResponse" ? m.granted : m.success;
  const r = k === "hbr" ? 5 : 8;
  body = svg("circle", { r, fill: yes ? OK : NO, class: "shape" });
  g.append(body, head);
  if (k !== "hbr") {
    g.append(svg("path", { d: yes ? "M-4,0 L-1,3 L4,-3" : "M-3,-3 L3,3 M3,-3 L-3,3", stroke: "#fff",
                           "stroke-width": 2, fill: "none", class: "mark" }));
  }
  if (m.type === "RequestVoteResponse" && m.pre_vote) body.setAttribute("stroke-dasharray", "2 2");
  return g;
}

function msgEl(m) {
  let g = view.msgEls.get(m.id);
  if (g) return g;
  g = svg("g", { class: "msg", "data-message": m.type, "data-from": m.from, "data-to": m.to, "data-id": m.id,
                 "data-kind": kindOf(m), tabindex: "0", role: "button" });
  if (m.pre_vote !== undefined) g.setAttribute("data-pre-vote", String(!!m.pre_vote));
  if (m.heartbeat !== undefined) g.setAttribute("data-heartbeat", String(!!m.heartbeat));
  const label = describe(m) + (source === "sim" ? ". Enter: lose it." : "");
  g.setAttribute("aria-label", label);
  const title = svg("title");
  title.textContent = label;
  // hit: the token and its label, one clickable area; bg: a light box behind the label
  const hit = svg("rect", { class: "hit" });
  const ring = svg("circle", { class: "ring", r: 14 });
  const tok = shapeFor(m);
  const bg = svg("rect", { class: "bg", rx: 3 });
  const txt = svg("text", { class: "txt" });
  txt.textContent = stageLabel(m);
  g.append(title, hit, ring, bg, tok, txt);
  g.addEventListener("click", e => { e.stopPropagation(); dropMessage(m.id, g); });
  g.addEventListener("keydown", e => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); e.stopPropagation(); dropMessage(m.id, g); }
  });
  $("#messages").append(g);
  measure(g);
  view.msgEls.set(m.id, g);
  return g;
}

// a label's size, from a canvas with the label's font (no layout of the page needed)
let measurer = null;
function measure(g) {
  const txt = g.querySelector(".txt");
  if (!measurer) measurer = { ctx: document.createElement("canvas").getContext("2d"), fonts: new Map() };
  const kind = g.getAttribute("class") + (g.dataset.kind || "");
  let font = measurer.fonts.get(kind);
  if (!font) {
    const style = getComputedStyle(txt);
    font = { css: `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`, size: parseFloat(style.fontSize) || 12 };
    measurer.fonts.set(kind, font);
  }
  if (measurer.ctx.font !== font.css) measurer.ctx.font = font.css;
  g._tw = measurer.ctx.measureText(txt.textContent).width || txt.textContent.length * 6.2;
  g._th = font.size * 1.2;
}

function ghostEl(key, m, kind) {
  let g = view.ghostEls.get(key);
  if (g) return g;
  g = svg("g", { class: `msg ${kind}`, "data-lost": m.type, "data-id": m.id, "aria-hidden": "true" });
  const tok = svg("g", { class: "tok" });
  tok.append(svg("path", { d: "M-6,-6 L6,6 M6,-6 L-6,6", stroke: NO, "stroke-width": 3 }));
  const txt = svg("text", { class: "txt" });
  txt.textContent = kind === "lost" ? `lost: ${m.label}` : `cut: ${m.label}`;
  g.append(svg("rect", { class: "bg", rx: 3 }), tok, txt);
  $("#messages").append(g);
  measure(g);
  view.ghostEls.set(key, g);
  return g;
}

// the lane of a message from a to b: beside the straight line, on the right of the way it goes
function lane(from, to) {
  const p = view.pos.get(from), q = view.pos.get(to);
  if (!p || !q) return null;
  const dx = q.x - p.x, dy = q.y - p.y, len = Math.hypot(dx, dy) || 1;
  const ux = dx / len, uy = dy / len, nx = -uy, ny = ux;
  const gap = view.R + 12, off = 8;
  return { sx: p.x + ux * gap + nx * off, sy: p.y + uy * gap + ny * off,
           ex: q.x - ux * gap + nx * off, ey: q.y - uy * gap + ny * off, ux, uy, nx, ny,
           angle: Math.atan2(dy, dx) * 180 / Math.PI };
}

function arriveOf(m) {
  if (m.arrive !== null && m.arrive !== undefined) return m.arrive;
  if (source === "live" && live.delivered.has(m.id)) return live.delivered.get(m.id);
  return null;
}
function fraction(m, T) {
  const arrive = arriveOf(m);
  if (arrive === null) return Math.max(0, Math.min(0.85, (T - m.sent) / 60));
  if (arrive <= m.sent) return 1;
  return Math.max(0, Math.min(1, (T - m.sent) / (arrive - m.sent)));
}

function renderMessages(f) {
  const ids = new Set();
  const lanes = new Map();
  for (const m of f.flight) {
    ids.add(m.id);
    const g = msgEl(m);
    const key = `${m.from}>${m.to}`;
    if (!lanes.has(key)) lanes.set(key, []);
    lanes.get(key).push(m);
    g.dataset.stack = "0";
  }
  for (const [id, g] of view.msgEls) if (!ids.has(id)) { g.remove(); view.msgEls.delete(id); }
  // messages sent close together on one lane: their labels stack
  for (const list of lanes.values()) {
    list.sort((a, b) => a.sent - b.sent || a.id - b.id);
    let stack = 0;
    for (let i = 1; i < list.length; i++) {
      stack = list[i].sent - list[i - 1].sent < 12 ? stack + 1 : 0;
      view.msgEls.get(list[i].id).dataset.stack = String(stack);
    }
  }
  // tracks: a faint line for every lane in use, dashed when only heartbeats use it
  const used = new Set();
  for (const [key, list] of lanes) {
    const [from, to] = key.split(">");
    const l = lane(from, to);
    if (!l) continue;
    used.add(key);
    let t = view.trackEls.get(key);
    if (!t) { t = svg("line", { class: "track" }); $("#tracks").append(t); view.trackEls.set(key, t); }
    setAttr(t, "x1", l.sx.toFixed(1)); setAttr(t, "y1", l.sy.toFixed(1));
    setAttr(t, "x2", l.ex.toFixed(1)); setAttr(t, "y2", l.ey.toFixed(1));
    t.classList.toggle("hb", list.every(m => m.heartbeat));
  }
  for (const [key, t] of view.trackEls) if (!used.has(key)) { t.remove(); view.trackEls.delete(key); }
  // ghosts: messages lost since the frame before, and messages that could not leave (link cut)
  const ghosts = new Map();
  const prev = frame(view.k - 1);
  if (prev) {
    for (const m of prev.flight) {
      if (!ids.has(m.id) && f.delivered !== m.id) ghosts.set(`lost:${m.id}`, [m, "lost"]);
    }
  }
  for (const m of f.cut || []) ghosts.set(`cut:${m.id}`, [m, "cut"]);
  for (const [key, g] of view.ghostEls) if (!ghosts.has(key)) { g.remove(); view.ghostEls.delete(key); }
  for (const [key, [m, kind]] of ghosts) {
    const g = ghostEl(key, m, kind);
    g.dataset.frac = kind === "lost" ? String(fraction(m, f.t)) : "0.18";
    g.dataset.from = m.from;
    g.dataset.to = m.to;
  }
  view.motionKey = "";
}

function place(g, m, frac) {
  const l = lane(m.from, m.to);
  if (!l) { g.setAttribute("visibility", "hidden"); return; }
  g.removeAttribute("visibility");
  const x = l.sx + (l.ex - l.sx) * frac, y = l.sy + (l.ey - l.sy) * frac;
  g.setAttribute("transform", `translate(${x.toFixed(1)},${y.toFixed(1)})`);
  const tok = g.querySelector(".tok");
  tok.setAttribute("transform", `rotate(${l.angle.toFixed(1)})`);
  // keep the tick and cross upright
  const mark = tok.querySelector(".mark");
  if (mark) mark.setAttribute("transform", `rotate(${(-l.angle).toFixed(1)})`);
  const txt = g.querySelector(".txt");
  const stack = Number(g.dataset.stack || 0);
  const d = 16 + stack * 14;
  const lx = l.nx * d, ly = l.ny * d;
  setAttr(txt, "x", lx.toFixed(1));
  setAttr(txt, "y", (ly + 4 + (Math.abs(l.nx) > 0.35 ? stack * 13 * Math.sign(l.ny || 1) : 0)).toFixed(1));
  // the text reaches away from the server it is nearest to, so it never covers one
  const dir = frac < 0.5 ? 1 : -1;
  const along = l.ux * dir;
  const anchor = along > 0.3 ? "start" : along < -0.3 ? "end" : l.nx > 0.35 ? "start" : l.nx < -0.35 ? "end" : "middle";
  setAttr(txt, "text-anchor", anchor);
  const w = g._tw || 40, h = g._th || 14;
  const tx = Number(txt.getAttribute("x")), ty = Number(txt.getAttribute("y"));
  const x0 = anchor === "start" ? tx : anchor === "end" ? tx - w : tx - w / 2;
  const y0 = ty - h * 0.78;
  const bg = g.querySelector(".bg");
  setAttr(bg, "x", (x0 - 3).toFixed(1)); setAttr(bg, "y", (y0 - 1).toFixed(1));
  setAttr(bg, "width", (w + 6).toFixed(1)); setAttr(bg, "height", (h + 2).toFixed(1));
  const hit = g.querySelector(".hit");
  if (hit) {
    const hx0 = Math.min(-15, x0 - 3), hy0 = Math.min(-15, y0 - 1);
    const hx1 = Math.max(15, x0 + w + 3), hy1 = Math.max(15, y0 + h + 1);
    setAttr(hit, "x", hx0.toFixed(1)); setAttr(hit, "y", hy0.toFixed(1));
    setAttr(hit, "width", (hx1 - hx0).toFixed(1)); setAttr(hit, "height", (hy1 - hy0).toFixed(1));
  }
}

function renderMotion() {
  const f = frame(view.k);
  const key = `${view.k}:${view.T}:${source}:${view.layoutKey}`;
  if (!f || key === view.motionKey) return;
  view.motionKey = key;
  const T = view.T;
  for (const m of f.flight) {
    const g = view.msgEls.get(m.id);
    if (g) place(g, m, fraction(m, T));
  }
  for (const g of view.ghostEls.values()) {
    place(g, { from: g.dataset.from, to: g.dataset.to }, Number(g.dataset.frac));
  }
  for (const n of f.nodes) {
    const g = view.nodeEls.get(n.id);
    if (!g) continue;
    const timer = g.querySelector(".timer");
    const c = Number(timer.dataset.c || 0);
    if (n.up && n.timer && n.timer[1] > n.timer[0]) {
      const left = Math.max(0, Math.min(1, (n.timer[1] - T) / (n.timer[1] - n.timer[0])));
      timer.setAttribute("stroke-dashoffset", (c * (1 - left)).toFixed(1));
      timer.removeAttribute("visibility");
      g.querySelector(".timer-track").removeAttribute("visibility");
      timer.classList.toggle("low", left < 0.25);
    } else {
      timer.setAttribute("visibility", "hidden");
      g.querySelector(".timer-track").setAttribute("visibility", "hidden");
    }
  }
  setText($("#clock"), source === "live" ? fmtT(T) : `t = ${fmtT(T)}`);
}

// ---------------------------------------------------------------- logs (a canvas: cheap for 7 servers x 1,000 entries)

let hatch = null;
function hatchPattern(ctx) {
  if (hatch) return hatch;
  const c = document.createElement("canvas");
  c.width = c.height = 6;
  const x = c.getContext("2d");
  x.fillStyle = "#e4e4e4"; x.fillRect(0, 0, 6, 6);
  x.strokeStyle = "#aaa"; x.lineWidth = 1.5;
  x.beginPath(); x.moveTo(0, 6); x.lineTo(6, 0); x.moveTo(-1, 1); x.lineTo(1, -1); x.moveTo(5, 7); x.lineTo(7, 5); x.stroke();
  hatch = ctx.createPattern(c, "repeat");
  return hatch;
}

const kindCache = new WeakMap();
function kindsOf(log) {
  let m = kindCache.get(log);
  if (!m) { m = new Map(log.kinds || []); kindCache.set(log, m); }
  return m;
}
function termAt(log, i) {
  const runs = log.runs;
  let lo = 0, hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1, r = runs[mid];
    if (i < r[0]) hi = mid - 1; else if (i > r[1]) lo = mid + 1; else return r[2];
  }
  return i === log.base[0] ? log.base[1] : null;
}
function lastOf(n) {
  if (typeof n.last === "number") return n.last;
  const runs = n.log.runs;
  return runs.length ? runs[runs.length - 1][1] : n.log.base[0];
}

function renderLogs(f) {
  const cv = $("#logs");
  const ctx = cv.getContext("2d");
  const cssW = Math.max(400, cv.clientWidth || 800);
  const spares = sparesOf(f);
  const rows = f.nodes.map(n => {
    if (n.up && n.log) return { id: n.id, v: n, stale: false, up: true };
    const d = lastUp(n.id, view.k);
    return { id: n.id, v: d && d.log ? d : null, stale: true, up: false, spare: spares.has(n.id) };
  });
  const ROW = 30, TOP = 18, LABEL = 78, BOX = 22, STEP = 24;
  const metaOf = r => {
    if (!r.v) return ["", ""];
    const n = r.v, last = lastOf(n), base = n.log.base[0];
    const durable = typeof n.durable === "number" ? n.durable : last;
    return [`last ${last}` + (r.up ? ` commit ${n.commit}` : ""),
            (r.up ? `applied ${n.applied}` : "on disk") + (durable < last ? ` disk ${durable}` : "") + (base ? ` snap ${base}` : "")];
  };
  const metas = rows.map(metaOf);
  ctx.font = "10px ui-monospace, monospace";
  const META = 14 + Math.max(90, ...metas.flat().map(t => ctx.measureText(t).width));
  const OVW = Math.max(120, Math.min(240, cssW * 0.2));
  const H = TOP + rows.length * ROW + 4;
  const W = Math.max(6, Math.min(40, Math.floor((cssW - LABEL - META - OVW - 16) / STEP)));
  let end = 0;
  for (const r of rows) if (r.v) end = Math.max(end, lastOf(r.v));
  const start = Math.max(1, end - W + 1);
  const key = `${cssW}|${start}|${W}|` + rows.map(r => r.v ? `${r.id}${r.up}${r.v.commit},${r.v.applied},${r.v.durable},${lastOf(r.v)},${JSON.stringify(r.v.log)}` : r.id).join("|");
  if (key === view.logsKey) return;
  view.logsKey = key;
  const dpr = window.devicePixelRatio || 1;
  if (cv.width !== Math.round(cssW * dpr) || cv.height !== Math.round(H * dpr)) {
    cv.width = Math.round(cssW * dpr);
    cv.height = Math.round(H * dpr);
    cv.style.height = H + "px";
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, H);
  ctx.textBaseline = "middle";
  // index axis
  ctx.font = "10px ui-monospace, monospace";
  ctx.fillStyle = "#888";
  ctx.textAlign = "center";
  for (let i = start; i < start + W; i++) {
    if (i === start || i % 5 === 0) ctx.fillText(String(i), LABEL + (i - start) * STEP + BOX / 2, 8);
  }
  ctx.textAlign = "left";
  ctx.fillText("index", 4, 8);
  const ovX = cssW - OVW - 6;
  ctx.fillText(end > W ? `whole log, 1\u2013${end}` : "whole log", ovX, 8);
  const terms = new Set();
  const summary = [];
  rows.forEach((r, row) => {
    const y = TOP + row * ROW;
    ctx.globalAlpha = 1;
    ctx.font = "bold 13px system-ui, sans-serif";
    ctx.fillStyle = r.up ? "#111" : "#888";
    ctx.textAlign = "left";
    ctx.fillText(r.id, 6, y + BOX / 2 + 1);
    ctx.font = "10px system-ui, sans-serif";
    if (r.spare && !r.v) ctx.fillText("spare: not in the cluster", LABEL, y + BOX / 2 + 1);
    else if (!r.up) ctx.fillText(r.v ? "down:" : "down", 30, y + BOX / 2 + 1);
    if (!r.v) { summary.push(`${r.id}: ${r.spare ? "spare, not in the cluster" : "down"}`); return; }
    const n = r.v, log = n.log, base = log.base[0], last = lastOf(n);
    const commit = r.up ? n.commit : 0, applied = r.up ? n.applied : 0;
    const durable = typeof n.durable === "number" ? n.durable : last;
    const kinds = kindsOf(log);
    const alpha = r.stale ? 0.5 : 1;
    for (let i = start; i < start + W; i++) {
      const x = LABEL + (i - start) * STEP;
      if (i <= base) {
        ctx.globalAlpha = alpha;
        ctx.fillStyle = hatchPattern(ctx);
        ctx.fillRect(x, y, BOX, BOX);
        continue;
      }
      if (i > last) {
        ctx.globalAlpha = 1;
        ctx.strokeStyle = "#e3e3e3";
        ctx.setLineDash([3, 3]);
        ctx.strokeRect(x + 0.5, y + 0.5, BOX - 1, BOX - 1);
        ctx.setLineDash([]);
        continue;
      }
      const t = termAt(log, i);
      terms.add(t);
      const committed = i <= commit;
      const onDisk = i <= durable;
      ctx.globalAlpha = alpha * (committed ? 1 : 0.42);
      ctx.fillStyle = termFill(t);
      ctx.fillRect(x, y, BOX, BOX);
      ctx.globalAlpha = alpha;
      if (!onDisk) {
        ctx.fillStyle = "#fff";
        ctx.fillRect(x + 2, y + 2, BOX - 4, BOX - 4);
        ctx.strokeStyle = termFill(t);
        ctx.lineWidth = 2;
        ctx.setLineDash([3, 2]);
        ctx.strokeRect(x + 1, y + 1, BOX - 2, BOX - 2);
        ctx.setLineDash([]);
        ctx.lineWidth = 1;
      }
      ctx.fillStyle = onDisk && committed ? termInk(t) : "#000";
      ctx.font = "11px ui-monospace, monospace";
      ctx.textAlign = "center";
      ctx.fillText(String(t), x + BOX / 2, y + BOX / 2 + 1);
      const kind = kinds.get(i);
      if (kind) {
        ctx.font = "bold 8px system-ui, sans-serif";
        ctx.fillStyle = "#000";
        ctx.fillStyle = "#fff";
        ctx.fillRect(x + BOX - 8, y, 8, 9);
        ctx.fillStyle = "#000";
        ctx.fillText(kind === "noop" ? "N" : "C", x + BOX - 4, y + 5);
      }
    }
    ctx.globalAlpha = 1;
    ctx.textAlign = "left";
    // commit index: a bar after the last committed entry; applied: a triangle under the last applied
    if (r.up && commit >= start - 1 && commit < start + W) {
      const x = LABEL + (commit - start + 1) * STEP - 2;
      ctx.fillStyle = "#111";
      ctx.fillRect(x - 1.5, y - 3, 3, BOX + 6);
    }
    if (r.up && applied >= start && applied < start + W) {
      const x = LABEL + (applied - start) * STEP + BOX / 2;
      ctx.fillStyle = "#111";
      ctx.beginPath(); ctx.moveTo(x, y + BOX + 1); ctx.lineTo(x - 4, y + BOX + 7); ctx.lineTo(x + 4, y + BOX + 7); ctx.fill();
    }
    // numbers
    const mx = LABEL + W * STEP + 6;
    ctx.font = "10px ui-monospace, monospace";
    ctx.fillStyle = r.up ? "#333" : "#888";
    ctx.fillText(metas[row][0], mx, y + 5);
    ctx.fillText(metas[row][1], mx, y + 17);
    // the whole log, compressed: runs of one term, the snapshot, the commit index, the window shown
    const scale = end ? OVW / end : 0;
    ctx.globalAlpha = alpha;
    if (base) { ctx.fillStyle = hatchPattern(ctx); ctx.fillRect(ovX, y + 6, base * scale, 10); }
    for (const [a, b, t] of log.runs) {
      ctx.fillStyle = termFill(t);
      ctx.fillRect(ovX + (a - 1) * scale, y + 6, Math.max(1, (b - a + 1) * scale), 10);
    }
    ctx.globalAlpha = 1;
    if (r.up && commit) { ctx.fillStyle = "#111"; ctx.fillRect(ovX + commit * scale - 1, y + 3, 2, 16); }
    ctx.strokeStyle = "#555";
    ctx.strokeRect(ovX + (start - 1) * scale + 0.5, y + 4.5, Math.max(2, (Math.min(end, start + W - 1) - start + 1) * scale) - 1, 13);
    summary.push(`${r.id}${r.up ? "" : " (down, on disk)"}: entries ${base + 1} to ${last}, terms ` +
                 log.runs.map(([a, b, t]) => `${t} at ${a}${b > a ? "\u2013" + b : ""}`).join(", ") +
                 (r.up ? `; commit ${commit}, applied ${applied}` : "") + (durable < last ? `; on disk up to ${durable}` : "") +
                 (base ? `; snapshot through ${base}` : ""));
  });
  const text = $("#logs-text");
  const html = summary.map(s => `<li>${esc(s)}</li>`).join("");
  if (text.innerHTML !== html) text.innerHTML = html;
  const termKey = Array.from(terms).filter(t => t !== null).sort((a, b) => a - b).join(",");
  if (termKey !== view.termKey) {
    view.termKey = termKey;
    $("#term-legend").innerHTML = termKey ? "terms: " + termKey.split(",").map(t =>
      `<span style="background:${termFill(Number(t))};color:${termInk(Number(t))}">${t}</span>`).join("") : "";
  }
}

// ---------------------------------------------------------------- panels

function paperTitle(cite) {
  if (cite.startsWith("thesis")) return "Consensus: Bridging Theory and Practice, Ongaro (PhD thesis)";
  if (cite.startsWith("LeaseGuard")) return "LeaseGuard: Raft Leases Done Right, Davis, Demirbas & Deng (SIGMOD 2026)";
  return PAPER;
}
function renderNarration(f) {
  const sentences = f.narration || [];
  const key = `${source}:${f.i}:${f.label}:` + JSON.stringify(sentences);
  if (key === view.narrKey) return;
  view.narrKey = key;
  const broke = f.broke ? `<p class="broke" role="alert"><strong>This step broke ${esc(f.broke.invariant)}.</strong> ` +
    `${esc(f.broke.plain)} <span class="detail">${esc(f.broke.detail)}</span></p>` : "";
  const html = `<p class="label">${esc(f.label || "")}</p>` + broke + (sentences.length
    ? sentences.map(s => {
        const src = s.source ? String(s.source) : "";
        const file = src.replace(/^raftkv\/raft\//, "");
        return `<p class="sentence${s.call ? " call" : ""}">${esc(s.text)}` +
          (s.paper ? ` <span class="cite" title="${esc(paperTitle(s.paper))}">${esc(s.paper)}</span>` : "") +
          (src ? ` <button class="src" data-source="${esc(src)}" title="open ${esc(s.function || src)} at ${esc(src)}"` +
                 ` aria-label="source ${esc(file)}">${esc(file)}</button>` : "") + `</p>`;
      }).join("")
    : broke ? "" : `<p class="none">Nothing to explain in this step: look at the picture.</p>`);
  $("#narration").innerHTML = html;
  setText($("#frame-label"), f.label || "");
}

async function openSource(ref) {
  const cut = ref.lastIndexOf(":");
  const path = ref.slice(0, cut), line = Number(ref.slice(cut + 1));
  let r;
  try { r = await call("GET", `${API}/source?path=${encodeURIComponent(path)}&line=${line}`); }
  catch (e) { say(`source: ${e.message}`, true); return; }
  const box = $("#source");
  box.hidden = false;
  $("#source-name").textContent = `${r.path}:${r.line}`;
  const pre = $("#source-code");
  pre.innerHTML = r.lines.map((text, j) => {
    const no = r.first + j;
    return `<span class="ln${no === r.line ? " hl" : ""}" data-line="${no}"><span class="no">${no}</span>${esc(text)}</span>`;
  }).join("");
  const hl = $(".ln.hl", pre);
  if (hl) pre.scrollTop = Math.max(0, hl.offsetTop - pre.offsetTop - pre.clientHeight / 3);
  pre.focus({ preventScroll: true });
  box.scrollIntoView({ block: "nearest" });
}

function renderClients(f) {
  const list = f.clients || [];
  const key = JSON.stringify(list);
  if (key === view.clientsKey) return;
  view.clientsKey = key;
  const word = { pending: "\u2026 waiting", ok: "\u2713 ok", failed: "\u2717 failed", unknown: "? unknown" };
  $("#client-list").innerHTML = list.length ? list.map(c => {
    const what = c.kind === "write" ? `write ${c.key}=${c.value}` : `${c.lease ? "lease read" : "read"} ${c.key}`;
    let answer = "";
    if (c.status === "ok" && c.kind === "read") answer = `: ${c.key} = ${c.value === null || c.value === undefined ? "(not set)" : c.value}`;
    const detail = c.detail ? ` (${c.detail})` : c.status === "pending" && c.index ? ` (in the log at ${c.index})` : "";
    return `<li class="${esc(c.status)}" data-client="${esc(c.id)}"><span class="st">${word[c.status] || esc(c.status)}</span> ` +
           `${esc(what)} via ${esc(c.node)}${esc(answer)}${esc(detail)}</li>`;
  }).join("") : `<li class="muted">No requests yet: write a key, or read one.</li>`;
}

function renderVia(f) {
  const sel = $("#c-via");
  const ids = f.nodes.map(n => n.id);
  const key = ids.join(",");
  if (sel.dataset.key === key) return;
  sel.dataset.key = key;
  const keep = sel.value;
  sel.innerHTML = `<option value="">the leader</option>` + ids.map(id => `<option>${esc(id)}</option>`).join("");
  if (ids.includes(keep)) sel.value = keep;
}

let hclogAt = 0, hclogLater = 0;
function renderHclog() {
  const k = view.k;
  const key = `${source}:${k}:${sim.gen}`;
  if (key === view.hclogKey) return;
  // while playing fast, the lines catch up a few times a second rather than at every frame
  const now = performance.now();
  if (view.playing && now - hclogAt < 200) {
    if (!hclogLater) hclogLater = setTimeout(() => { hclogLater = 0; renderHclog(); }, 220);
    return;
  }
  hclogAt = now;
  view.hclogKey = key;
  const lines = [];
  for (let i = Math.max(firstIndex(), k - 60); i <= k; i++) {
    const f = frame(i);
    if (!f || !f.logs || !f.logs.length) continue;
    for (const l of f.logs) lines.push({ i, node: f.node, l, cur: i === k });
  }
  const shown = lines.slice(-80);
  const box = $("#hclog");
  box.innerHTML = shown.length ? shown.map(x => {
    const m = /^\[(\w+)\]/.exec(x.l);
    const lv = m ? m[1] : "";
    const rest = m ? x.l.slice(m[0].length) : x.l;
    return `<div class="l ${esc(lv)}${x.cur ? " current" : ""}"><span class="f">${esc(x.node || "")} #${x.i}</span> ` +
           `<span class="lv">[${esc(lv)}]</span>${esc(rest)}</div>`;
  }).join("") : `<div class="empty">No log lines in the last frames.</div>`;
  const cur = $(".l.current", box);
  if (cur) box.scrollTop = Math.max(0, cur.offsetTop - box.offsetTop - box.clientHeight / 2);
  else box.scrollTop = box.scrollHeight;
}

function actionText(a) {
  switch (a.verb) {
    case "drop": return `lose message ${a.message}`;
    case "write": return `write ${a.key || "x"}=${a.value || ""} via ${a.node}`;
    case "load": return `${a.value} writes via ${a.node}`;
    case "read": return `${a.value === "lease" ? "lease read" : "read"} ${a.key || "x"} via ${a.node}`;
    case "isolate": return `cut off ${a.node}`;
    case "heal": return a.node ? `heal ${a.node}` : "heal the network";
    case "timeout": return `time out ${a.node}`;
    case "campaign": return `${a.node} campaigns`;
    case "transfer": return `hand leadership to ${a.node}`;
    case "block": case "unblock": return `${a.verb} ${a.node}\u2192${a.to}`;
    default: return `${a.verb} ${a.node || ""}`.trim();
  }
}

function renderBranches() {
  const s = sim.summary;
  const ol = $("#branches");
  if (!s) { ol.innerHTML = ""; return; }
  ol.innerHTML = s.branches.map(b => {
    const own = b.actions.filter(a => a.at >= b.forked_at || b.parent === null);
    const where = b.parent === null ? "the first" : `from timeline ${b.parent} at frame ${b.forked_at}`;
    const shown = own.slice(-4).map(a => `${actionText(a)} (frame ${a.at})`);
    const acts = own.length ? ": " + (own.length > 4 ? `${own.length - 4} earlier actions, then ` : "") + shown.join(", ") : "";
    const current = b.id === s.branch;
    return `<li><button data-branch="${b.id}" aria-current="${current}" title="${current ? "you are on this timeline" : "go back to this timeline"}">` +
           `Timeline ${b.id}</button><span class="acts">${esc(where)}, ${b.frames} frames${esc(acts)}` +
           `${b.ended ? " · ended" : ""}</span></li>`;
  }).join("");
  document.body.dataset.branches = String(s.branches.length);
}

function renderTransport() {
  const n = count();
  const slider = $("#time");
  const max = Math.max(firstIndex(), n - 1);
  setAttr(slider, "min", firstIndex());
  setAttr(slider, "max", max);
  if (document.activeElement !== slider || Number(slider.value) !== view.k) slider.value = String(view.k);
  setAttr(slider, "aria-valuetext", n ? `frame ${view.k} of ${max}` : "no frames yet");
  setText($("#pos"), n ? `frame ${view.k} / ${max}` : "no frames yet");
  renderBuffered();
}

// ---------------------------------------------------------------- a server's actions (the popover)

const SIM_ACTIONS = [
  ["crash", "Crash", "c"], ["restart", "Restart", "r"], ["timeout", "Time out", "t"],
  ["isolate", "Partition", "p"], ["heal", "Heal", "h"],
  ["campaign", "Campaign", ""], ["transfer", "Transfer", ""], ["snapshot", "Snapshot", ""],
  ["write", "Write here", "w"], ["read", "Read here", "g"],
  ["add", "Add", ""], ["promote", "Promote", ""], ["remove", "Remove", ""],
];
const SIM_HELP = {
  crash: "the server stops; what is on disk stays (c)", restart: "start it again from its disk (r)",
  timeout: "its election timer fires now (t)", isolate: "cut it off the network (p)", heal: "reconnect it (h)",
  campaign: "it campaigns now, skipping pre-vote (as when told by TimeoutNow)",
  transfer: "transfer leadership: the leader hands over to this server (it sends TimeoutNow)",
  snapshot: "compact its log into a snapshot", write: "a client writes key=value through this server (w)",
  read: "a client reads key through this server, linearizably (g)",
  add: "the leader adds it to the cluster as a nonvoter: it gets the log but does not vote",
  promote: "the leader promotes it to a voter", remove: "the leader removes it from the configuration",
};
const LIVE_ACTIONS = [["kill", "Kill", ""], ["pause", "Pause", ""], ["resume", "Resume", ""], ["transfer", "Transfer", ""]];
const LIVE_HELP = {
  kill: "drop all its Raft traffic until you resume it: to the others it is dead (fault injection, /ui/faults)",
  pause: "drop all its Raft traffic for 5 s, as if the process stalled",
  resume: "let its messages through again", transfer: "transfer leadership: ask the leader to hand over to it",
};

function buildPopover() {
  const box = $("#pop-actions");
  const key = source;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.innerHTML = "";
  const list = source === "sim" ? SIM_ACTIONS : LIVE_ACTIONS;
  const help = source === "sim" ? SIM_HELP : LIVE_HELP;
  for (const [verb, name, shortcut] of list) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.verb = verb;
    b.setAttribute("aria-label", name);
    b.title = help[verb] || "";
    b.innerHTML = esc(name) + (shortcut ? ` <kbd aria-hidden="true">${shortcut}</kbd>` : "");
    b.addEventListener("click", () => popAction(verb));
    box.append(b);
  }
  if (source === "live") {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = "Kill and Pause act on the server's Raft traffic: they need fault injection on it " +
      "(RAFT_FAULT_INJECTION=true). The process keeps running.";
    box.append(p);
  }
}

// one button per other server: cut the link both ways, or restore it
function renderLinkButtons(id, others, links) {
  const box = $("#pop-links");
  if (source !== "sim") { box.hidden = true; return; }
  box.hidden = false;
  const key = id + "|" + others.join(",");
  if (box.dataset.key !== key) {
    box.dataset.key = key;
    box.innerHTML = `<span class="muted">link to</span>` + others.map(x =>
      `<button type="button" data-link="${esc(x)}"></button>`).join("");
  }
  for (const b of $$("button[data-link]", box)) {
    const x = b.dataset.link, cut = linkCut(links, id, x);
    const name = cut ? `Restore ${x}` : `Cut ${x}`;
    setText(b, cut ? `\u2702 ${x}` : x);
    setAttr(b, "aria-label", name);
    b.title = cut ? `restore the link between ${id} and ${x}` : `cut the link between ${id} and ${x}: messages both ways are lost`;
    b.classList.toggle("is-cut", cut);
  }
}

async function toggleLink(id, x) {
  const f = frame(view.k);
  const links = linksAt(view.k, f ? f.nodes.map(n => n.id) : undefined);
  const verb = linkCut(links, id, x) ? "unblock" : "block";
  if (await act(verb, { node: id, to: x })) await act(verb, { node: x, to: id });
  if (view.pop) renderPopover();
}

function openActions(id, focusInside) {
  view.selected = id;
  view.pop = id;
  buildPopover();
  renderPopover();
  $("#popover").hidden = false;
  positionPopover();
  view.dirty = true;
  if (focusInside) {
    const first = $$("#pop-actions button").find(b => !b.disabled && !b.hidden);
    if (first) first.focus();
  }
}

function closePopover(refocus) {
  const was = view.pop;
  view.pop = null;
  $("#popover").hidden = true;
  if (refocus && was && view.nodeEls.get(was)) view.nodeEls.get(was).focus();
}

function positionPopover() {
  const id = view.pop;
  const p = id && view.pos.get(id);
  const pop = $("#popover");
  if (!p) return;
  const stage = $("#stage").getBoundingClientRect();
  const wrap = $("#stage-wrap").getBoundingClientRect();
  const s = Math.min(stage.width / VIEW_W, stage.height / VIEW_H);
  const ox = stage.left - wrap.left + (stage.width - VIEW_W * s) / 2;
  const oy = stage.top - wrap.top + (stage.height - VIEW_H * s) / 2;
  const x = ox + p.x * s, y = oy + p.y * s, r = (view.R + 22) * s;
  const w = pop.offsetWidth || 250, h = pop.offsetHeight || 200;
  let left = p.x <= CX ? x + r : x - r - w;
  left = Math.max(4, Math.min(left, wrap.width - w - 4));
  let top = Math.max(4, Math.min(y - h / 2, wrap.height - h - 4));
  pop.style.left = `${left}px`;
  pop.style.top = `${top}px`;
}

function renderPopover() {
  const id = view.pop;
  if (!id) return;
  const f = frame(view.k);
  const n = f && f.nodes.find(x => x.id === id);
  $("#pop-title").textContent = `${id} — ${n ? (n.up ? n.role : "down") : "?"}`;
  if (!n) return;
  const members = membersOf(f);
  const links = linksAt(view.k, f.nodes.map(n => n.id));
  const cut = links.isolated;
  const others = f.nodes.map(n => n.id).filter(x => x !== id);
  const anyCut = others.some(x => linkCut(links, id, x));
  const leader = leaderOf(f);
  const member = members.has(id);
  $("#pop-state").textContent = n.up
    ? `term ${n.term} · voted ${n.vote || "nobody"} · log to ${n.last}, commit ${n.commit}` + (cut.has(id) ? " · cut off" : "")
    : member ? "down: its term, vote and log wait on its disk" : "a spare server, not in the cluster";
  const can = source === "sim" ? {
    crash: n.up, restart: !n.up && member, timeout: n.up, isolate: !cut.has(id), heal: anyCut,
    transfer: n.up && !!leader && leader !== id && n.suffrage === "voter", snapshot: n.up,
    campaign: n.up && n.role !== "Leader" && n.suffrage === "voter",
    write: n.up, read: n.up, add: !member && !!leader, promote: member && members.get(id) === "nonvoter" && !!leader,
    remove: member && !!leader && leader !== id,
  } : { kill: true, pause: true, resume: true, transfer: !!leader && leader !== id };
  renderLinkButtons(id, others, links);
  for (const b of $$("#pop-actions button[data-verb]")) {
    const ok = !!can[b.dataset.verb];
    if (b.disabled === ok) b.disabled = !ok;
    // only what makes sense for this server is shown, except the five basic ones
    const basic = ["crash", "restart", "timeout", "isolate", "heal", "kill", "pause", "resume"].includes(b.dataset.verb);
    b.hidden = !basic && !ok;
  }
}

async function popAction(verb) {
  const id = view.pop || view.selected;
  if (!id) return;
  if (source === "live") {
    if (verb === "transfer") await liveTransfer(id);
    else await liveFault(id, verb);
    return;
  }
  await serverAct(verb, id);
}

async function serverAct(verb, id) {
  id = id || view.selected;
  if (!id) { say("select a server first: click it, or press 1-7", true); return; }
  if (source === "live") {
    if (verb === "crash" || verb === "isolate") return liveFault(id, "kill");
    if (verb === "restart" || verb === "heal") return liveFault(id, "resume");
    say(`${verb}: not available on the live cluster`, true);
    return;
  }
  const extra = { node: id };
  if (verb === "write" || verb === "read") {
    extra.key = $("#c-key").value || "x";
    if (verb === "write") extra.value = $("#c-value").value;
  }
  const ok = await act(verb, extra);
  if (ok && verb === "write") bumpValue();
  if (view.pop) renderPopover();
}

function bumpValue() {
  const v = $("#c-value");
  if (/^\d+$/.test(v.value)) v.value = String(Number(v.value) + 1);
}

async function loadRequest() {
  if (source !== "sim") return;
  const f = frame(view.k);
  let node = $("#c-via").value;
  if (!node) node = leaderOf(f) || (f && (f.nodes.find(n => n.up) || {}).id);
  if (!node) { say("no server is up to take the writes", true); return; }
  await act("load", { node, key: "k", value: String($("#c-count").value || 100) });
}

async function clientRequest(verb) {
  if (source !== "sim") return;
  const f = frame(view.k);
  let node = $("#c-via").value;
  if (!node) node = leaderOf(f) || (f && (f.nodes.find(n => n.up) || {}).id);
  if (!node) { say("no server is up to take the request", true); return; }
  const extra = { node, key: $("#c-key").value || "x" };
  if (verb === "write") extra.value = $("#c-value").value;
  if (verb === "lease") { verb = "read"; extra.value = "lease"; }
  const ok = await act(verb, extra);
  if (ok && verb === "write") bumpValue();
}

async function dropMessage(id, el) {
  if (source !== "sim") { say("messages of the live cluster cannot be lost from here"); return; }
  const f = frame(view.k);
  const m = f && f.flight.find(x => x.id === id);
  if (!m) return;
  const focused = el && document.activeElement === el;
  setPlaying(false);
  const ok = await act("drop", { message: id });
  if (ok && focused) {
    const next = $("#messages .msg[data-message]");
    (next || $("#stage")).focus();
  }
}

// ---------------------------------------------------------------- the frame

function renderFrame() {
  view.dirty = false;
  view.lastUp.clear();
  const f = frame(view.k);
  // on <body id="learn"> and on <html>, for whatever waits on them
  for (const root of [document.body, document.documentElement]) {
    root.dataset.frame = f ? String(view.k) : "";
    root.dataset.branch = source === "sim" ? String(sim.branch) : "live";
  }
  renderTransport();
  const ended = $("#ended");
  if (!f) {
    setText($("#clock"), "");
    setText($("#frame-label"), source === "live" ? (live.note || "waiting for the live cluster…") : "loading…");
    setText(ended, "");
    if (source === "live") {
      const cv = $("#logs");
      cv.getContext("2d").clearRect(0, 0, cv.width, cv.height);
      view.logsKey = view.hclogKey = "";
      $("#logs-text").innerHTML = "";
      $("#hclog").innerHTML = `<div class="empty">No frames yet.</div>`;
      for (const m of [view.nodeEls, view.msgEls, view.ghostEls, view.trackEls, view.cutEls]) { for (const el of m.values()) el.remove(); m.clear(); }
      view.layoutKey = "";
      const narr = source === "live" && live.note ? live.note : "";
      if ($("#narration").textContent !== narr) $("#narration").textContent = narr;
      view.narrKey = "";
    }
    return;
  }
  layout(f);
  renderServers(f);
  renderMessages(f);
  renderLogs(f);
  renderNarration(f);
  renderClients(f);
  renderVia(f);
  renderHclog();
  setText(ended, source === "sim" && sim.ended && view.k >= sim.count - 1 ? `This timeline has ended: ${sim.ended}` : "");
  if (view.pop) { renderPopover(); positionPopover(); }
  view.motionKey = "";
}

// ---------------------------------------------------------------- help and keyboard

let helpReturn = null;
function openHelp() {
  helpReturn = document.activeElement;
  $("#help").hidden = false;
  $("#help-close").focus();
}
function closeHelp() {
  $("#help").hidden = true;
  if (helpReturn && helpReturn.focus) helpReturn.focus();
  helpReturn = null;
}

function focusMessage() {
  setPlaying(false);
  const m = $("#messages .msg[data-message]");
  if (m) m.focus(); else say("no message is in flight in this frame");
}

function selectServer(i) {
  const f = frame(view.k);
  if (!f || i >= f.nodes.length) return;
  const id = f.nodes[i].id;
  const g = view.nodeEls.get(id);
  if (g) g.focus();
  openActions(id, false);
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target instanceof Element ? e.target : document.body;
  if (e.key === "Escape") {
    if (!$("#help").hidden) { e.preventDefault(); closeHelp(); return; }
    if (!$("#popover").hidden) { e.preventDefault(); closePopover(true); return; }
    if (!$("#source").hidden) { e.preventDefault(); $("#source").hidden = true; return; }
    return;
  }
  if (t.closest("input:not([type=range]), select, textarea")) return;   // typing
  const onRange = !!t.closest("input[type=range]");
  const onControl = !!t.closest("button, a, summary, [role=button]");
  const scroller = !!t.closest("#source-code, #hclog");
  const key = e.key;
  const run = fn => { e.preventDefault(); fn(); };
  if (key === " ") { if (!onControl) run(togglePlay); return; }
  if (key === "ArrowRight" || key === "ArrowLeft") {
    if (onRange || scroller) return;
    run(() => stepBy(key === "ArrowRight" ? 1 : -1));
    return;
  }
  if (key === "Home" || key === "End") {
    if (onRange || scroller) return;
    run(() => { setPlaying(false); goTo(key === "Home" ? firstIndex() : count() - 1); });
    return;
  }
  if (key === "?") { run(() => ($("#help").hidden ? openHelp() : closeHelp())); return; }
  if (/^[1-7]$/.test(key)) { run(() => selectServer(Number(key) - 1)); return; }
  const verbs = { c: "crash", r: "restart", t: "timeout", p: "isolate", h: "heal" };
  if (verbs[key]) { run(() => serverAct(verbs[key])); return; }
  if (key === "w") { run(() => clientRequest("write")); return; }
  if (key === "g") { run(() => clientRequest("read")); return; }
  if (key === "m") { run(focusMessage); return; }
  if (key === "[") { run(() => { if (sim.lesson) showStop(sim.stop - 1); }); return; }
  if (key === "]") { run(() => { if (sim.lesson) showStop(sim.stop + 1); }); return; }
  if (key === "-") { run(() => speedBy(-1)); return; }
  if (key === "+" || key === "=") { run(() => speedBy(1)); return; }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("#src-sim").addEventListener("click", () => setSource("sim"));
  $("#src-live").addEventListener("click", () => { if (source === "live") startLive(); else setSource("live"); });
  $("#new-sim").addEventListener("click", () => { setSource("sim"); newSim(); });
  $("#lesson-pick").addEventListener("focus", () => loadLessons(false));
  $("#lesson-start").addEventListener("click", () => startLesson($("#lesson-pick").value));
  $("#stop-back").addEventListener("click", () => showStop(sim.stop - 1));
  $("#stop-next").addEventListener("click", () => showStop(sim.stop + 1));
  $("#check").addEventListener("click", check);
  $("#lesson-end").addEventListener("click", () => {
    sim.lesson = null; sim.stops = []; sim.stop = -1;
    $("#lesson").hidden = true;
  });
  $("#play").addEventListener("click", togglePlay);
  $("#prev").addEventListener("click", () => stepBy(-1));
  $("#step").addEventListener("click", () => stepBy(1));
  $("#speed").addEventListener("change", e => setSpeed(Number(e.target.value)));
  $("#time").addEventListener("input", e => { setPlaying(false); goTo(Number(e.target.value)); });
  $("#live-hb").addEventListener("change", () => { stopLive(); if (source === "live") startLive(); });
  $("#catch-up").addEventListener("click", () => { goTo(count() - 1); setPlaying(true); });
  $("#pop-close").addEventListener("click", () => closePopover(true));
  $("#pop-links").addEventListener("click", e => {
    const b = e.target.closest("button[data-link]");
    if (b && view.pop) toggleLink(view.pop, b.dataset.link);
  });
  $("#stage").addEventListener("click", () => closePopover(false));
  $("#help-open").addEventListener("click", openHelp);
  $("#help-close").addEventListener("click", closeHelp);
  $("#source-close").addEventListener("click", () => { $("#source").hidden = true; });
  $("#narration").addEventListener("click", e => {
    const b = e.target.closest("button.src");
    if (b) openSource(b.dataset.source);
  });
  $("#branches").addEventListener("click", e => {
    const b = e.target.closest("button[data-branch]");
    if (b) switchBranch(Number(b.dataset.branch));
  });
  $("#client-form").addEventListener("submit", e => { e.preventDefault(); clientRequest("write"); });
  $("#c-read").addEventListener("click", () => clientRequest("read"));
  $("#c-lease").addEventListener("click", () => clientRequest("lease"));
  $("#load-form").addEventListener("submit", e => { e.preventDefault(); loadRequest(); });
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", () => { view.logsKey = ""; view.dirty = true; if (view.pop) positionPopover(); });
}

async function boot() {
  wire();
  const params = new URLSearchParams(location.search);
  const nodes = Number(params.get("nodes"));
  if (nodes >= 3 && nodes <= 7) $("#node-count").value = String(nodes);
  const speed = Number(params.get("speed"));
  if (speed > 0) setSpeed(speed);
  setPlaying(!params.has("paused"));
  requestAnimationFrame(loop);
  loadLessons(true);
  if (params.get("source") === "live") { setSource("live"); return; }
  document.body.dataset.source = "sim";
  if (params.get("lesson")) { await startLesson(params.get("lesson")); return; }
  if (params.get("recording")) { await openRecording(params.get("recording")); return; }
  const seed = params.get("seed");
  const preVote = params.get("pre_vote");
  await newSim({ seed: seed !== null && /^\d+$/.test(seed) ? Number(seed) : null,
                 pre_vote: preVote === null ? undefined : preVote !== "false" && preVote !== "0" });
}

boot();
