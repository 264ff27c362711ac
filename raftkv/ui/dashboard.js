// raftkv dashboard: a live view of the whole cluster, or a replay of a
// simulator scenario, in three views: node cards, log strips, merged events.
// No libraries, no external resources: the page must work on a closed network.
// The page talks to the node that served it, over relative URLs: that node
// relays every other member's stream (/ui/stream?node=ID), so the page works
// wherever the browser reaches that one node (Docker, a tunnel, a proxy).
// When that node stops answering (killed, like the leader in the demo), the
// page carries on through another member, straight at that member's HTTP
// address (the members let one another's pages read their streams), and
// says so in a banner; if the browser reaches no other member, the banner
// says that, and why, instead of a row of "Unreachable" cards.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => Array.from(el.querySelectorAll(sel));
const WINDOW = 40;          // log indexes shown per strip
const KEEP_ENTRIES = 400;   // entries kept per node
const KEEP_EVENTS = 3000;   // events kept per node, so a chatty node cannot push out a dead one's last words
const SHOW_EVENTS = 400;    // rows rendered
const STALE_MS = 3000;      // a stream silent this long means the node is unreachable
const GIVE_UP_MS = 10000;   // connecting this long without a word or an answer means unreachable
const REOPEN_MS = 2000;     // how soon to reopen a stream the browser gave up on
const PROBE_MS = 3000;      // how long a member may take to answer "are you there?"
const PEERS_MS = 5000;      // how long the member list may take (a blackholed node never answers)
const LOST_AFTER = 2;       // failed looks in a row (a second apart) before the page leaves its node

// events: node id -> that node's records (and the page's own notes about it), oldest first
const live = { nodes: new Map(), events: new Map() };
// The node the page reads the cluster through. base "" is the node that
// served the page (relative URLs); otherwise another member's own origin.
// lost: the node the page last left, and why; blind: set while no member
// answers this browser, with each member's reason.
const watch = { id: null, servedBy: null, base: "", host: location.host, failures: 0, checking: false,
                lost: null, blind: null, why: "", html: "" };
const replay = { data: null, step: 0, timer: null };
const filter = { text: "", level: "", node: "", quick: "", internal: true };
let mode = "live";
let renderPending = false;

// ---------------------------------------------------------------- helpers

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function termColour(t) { return t ? `hsl(${(t * 137.508) % 360}, 62%, 46%)` : "#bbb"; }
function fmtTime(ev) {
  if (mode === "replay") return `t=${Math.round(ev.time * 1000)}ms`;
  const d = new Date(ev.time * 1000);
  return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
}
function api(path) { return watch.base + path; }
function streamURL(id) { return api(`/ui/stream?node=${encodeURIComponent(id)}`); }
// opts.timeoutMs: give up (AbortError) after that long
async function getJSON(url, opts) {
  const o = Object.assign({ cache: "no-store" }, opts || {});
  if (o.timeoutMs) { o.signal = AbortSignal.timeout(o.timeoutMs); delete o.timeoutMs; }
  const resp = await fetch(url, o);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  return { ok: resp.ok, status: resp.status, body };
}
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => { renderPending = false; render(); });
}
function say(text, isError) {
  const el = $("#op-result");
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

// ---------------------------------------------------------------- live: streams

function nodeEntry(id) {
  let n = live.nodes.get(id);
  if (!n) {
    // lastMsg: when the stream last spoke; failedAt: when the serving node last
    // said it cannot reach the member (or the stream broke); since: when the
    // page started trying, so "connecting..." turns into "unreachable" only
    // after a failure or a long silence, never at first sight.
    n = { id, http: null, suffrage: null, status: null, lastMsg: 0, failedAt: 0, failure: "", pending: false,
          since: Date.now(), entries: new Map(), lastSeq: 0, boot: null, es: null, wasUp: false };
    live.nodes.set(id, n);
  }
  return n;
}

function heard(n) {
  n.lastMsg = Date.now();
  n.pending = false;
}

function addEvents(id, records) {
  let list = live.events.get(id);
  if (!list) { list = []; live.events.set(id, list); }
  for (const r of records) list.push(r);
  if (list.length > KEEP_EVENTS) list.splice(0, list.length - KEEP_EVENTS);
}

// A row of the page's own in the event table where a node's stream was lost
// or came back, so the table tells where a node's last words end.
function pageNote(n, level, message, fields) {
  addEvents(n.id, [{ seq: 0, node: n.id, time: Date.now() / 1000, level, logger: "dashboard", message,
                     fields, note: true }]);
}

function connect(n) {
  if (n.es) return;
  const es = new EventSource(streamURL(n.id));
  n.es = es;
  es.addEventListener("hello", e => {
    const h = JSON.parse(e.data);
    if (n.boot !== null && h.boot !== n.boot) {   // the node restarted: its log view starts over
      n.entries.clear();
      n.lastSeq = 0;
    }
    n.boot = h.boot;
    n.http = h.http || n.http;
    n.faultInjection = h.fault_injection;
    heard(n);
    scheduleRender();
  });
  es.addEventListener("status", e => {
    const st = JSON.parse(e.data);
    n.status = st;
    heard(n);
    applyLog(n, st.log);
    scheduleRender();
  });
  es.addEventListener("log", e => {
    const recs = JSON.parse(e.data);
    heard(n);
    const fresh = recs.filter(r => r.seq > n.lastSeq);
    if (fresh.length) { n.lastSeq = fresh[fresh.length - 1].seq; addEvents(n.id, fresh); }
    scheduleRender();
  });
  // The serving node cannot reach this member: it says why, then closes
  // the stream, and the browser tries again by itself.
  es.addEventListener("unreachable", e => {
    const u = JSON.parse(e.data);
    n.failure = u.error || "unreachable";
    n.pending = !!u.pending;
    if (!u.pending) n.failedAt = Date.now();
    scheduleRender();
  });
  es.onerror = () => {
    if (n.es !== es) return;   // a stream of the node the page no longer reads through
    if (!n.pending && n.lastMsg >= n.failedAt) {   // the stream broke without a word
      n.failedAt = Date.now();
      n.failure = n.failure || "the stream broke";
    }
    if (n.id === watch.id) checkWatched();   // every stream goes through that node: is it still there?
    if (es.readyState === EventSource.CLOSED) {    // the browser gave up: open it again later
      n.es = null;
      setTimeout(() => { if (live.nodes.get(n.id) === n) connect(n); }, REOPEN_MS);
    }
    scheduleRender();
  };
}

function applyLog(n, d) {
  if (!d) return;
  for (const k of Array.from(n.entries.keys())) if (k > d.last) n.entries.delete(k);
  for (const [i, t, ty] of d.entries) n.entries.set(i, [t, ty]);
  if (n.entries.size > KEEP_ENTRIES) {
    const keys = Array.from(n.entries.keys()).sort((a, b) => a - b);
    for (const k of keys.slice(0, keys.length - KEEP_ENTRIES)) n.entries.delete(k);
  }
}

// "up": the stream spoke lately and nothing failed since; "unreachable": the
// serving node could not reach it, the stream broke or went silent, or the
// page got no word for GIVE_UP_MS; "connecting": none of those yet.
function connState(n) {
  const now = Date.now();
  if (n.lastMsg && n.lastMsg >= n.failedAt && now - n.lastMsg < STALE_MS) return "up";
  if (n.failedAt || n.lastMsg) return "unreachable";
  return now - n.since < GIVE_UP_MS ? "connecting" : "unreachable";
}
function isUp(n) { return connState(n) === "up"; }

// Note in the event table where a node's stream was lost and where it came back.
function noteTransitions() {
  for (const n of live.nodes.values()) {
    const up = isUp(n);
    if (up === n.wasUp) continue;
    if (n.wasUp) pageNote(n, "WARN", "dashboard lost this node's stream", [["reason", n.failure || "silent"]]);
    else if (n.failedAt) pageNote(n, "INFO", "dashboard reached this node again", []);
    n.wasUp = up;
    if (up) n.failure = "";
  }
}

async function refreshPeers() {
  // Only the node the page reads through is asked: it answers with the
  // leader's view, or with its own when it cannot reach a leader.
  try {
    const r = await getJSON(api("/peers"), { timeoutMs: PEERS_MS });
    watchedAnswers();
    if (r.ok && Array.isArray(r.body)) {
      const ids = new Set();
      for (const p of r.body) {
        ids.add(p.id);
        const n = nodeEntry(p.id);
        n.suffrage = p.suffrage;
        n.peer = p;
        if (p.http) n.http = p.http;
        connect(n);
      }
      // a removed member's card goes; its events stay in the table
      for (const [id, n] of live.nodes) {
        if (!ids.has(id)) { if (n.es) n.es.close(); live.nodes.delete(id); }
      }
    }
  } catch (e) {
    checkWatched();
  }
  scheduleRender();
}

// ---------------------------------------------------------------- live: the node the page reads through

// Why a fetch of url failed, in words: fetch says only "failed", but a
// no-cors request (whose answer the page may not read) still tells a member
// that answers and refuses this page's origin from one the browser cannot
// reach at all.
async function whyNot(url, err) {
  if (err && (err.name === "TimeoutError" || err.name === "AbortError")) return `no answer within ${PROBE_MS / 1000} s`;
  try {
    await fetch(url, { mode: "no-cors", cache: "no-store", signal: AbortSignal.timeout(PROBE_MS) });
    return CORS_REFUSED;
  } catch (e) {
    return NO_ROUTE;
  }
}
const NO_ROUTE = "this browser cannot connect to it";
const CORS_REFUSED = "it answers, but does not let this page read it (CORS)";

// Is a member serving the dashboard's views at base, to this page? Asks its
// /status (who it is) and opens its own stream (the route a page of another
// origin may read only if that member knows the page's origin as a member's).
async function probeMember(base) {
  let id;
  try {
    const r = await getJSON(base + "/status", { timeoutMs: PROBE_MS });
    if (!r.ok || !r.body || typeof r.body.id !== "string") return { why: `it answered HTTP ${r.status}, not as a raftkv node` };
    id = r.body.id;
  } catch (e) {
    return { why: await whyNot(base + "/status", e) };
  }
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), PROBE_MS);
  try {
    const resp = await fetch(`${base}/ui/stream?node=${encodeURIComponent(id)}`, { cache: "no-store", signal: stop.signal });
    return resp.ok ? { ok: true, id } : { id, why: `its stream answered HTTP ${resp.status}` };
  } catch (e) {
    if (e.name === "AbortError") return { id, why: `its stream did not answer within ${PROBE_MS / 1000} s` };
    return { id, why: CORS_REFUSED };
  } finally {
    clearTimeout(timer);
    stop.abort();   // the probe only wanted the answer's head
  }
}

// The URLs a member may answer at: the HTTP address the members know it by,
// then the same port under the name this browser reached the page by (a
// tunnel or Docker's published ports carry each member's port to one host).
function memberBases(http) {
  const out = [`${location.protocol}//${http}`];
  const port = http.slice(http.lastIndexOf(":") + 1);
  const host = http.slice(0, http.lastIndexOf(":"));
  if (/^\d+$/.test(port) && host !== location.hostname) out.push(`${location.protocol}//${location.hostname}:${port}`);
  return out;
}

// Called whenever the watched node may be gone (its stream broke, /peers
// failed). It must fail LOST_AFTER looks in a row before the page moves.
async function checkWatched() {
  if (watch.checking || mode !== "live") return;
  watch.checking = true;
  let again = false;
  try {
    try {
      await getJSON(api("/status"), { timeoutMs: PROBE_MS });
      watchedAnswers();
      return;
    } catch (e) {
      watch.failures++;
      watch.why = await whyNot(api("/status"), e);
    }
    if (watch.failures < LOST_AFTER) { again = true; return; }
    await moveOn();
  } finally {
    watch.checking = false;
    scheduleRender();
    if (again) setTimeout(checkWatched, 1000);
  }
}

// Any answer, whatever its status, means the node is there.
function watchedAnswers() {
  watch.failures = 0;
  if (watch.blind) { watch.blind = null; reopenAll(); }
}

// The watched node is gone: read the cluster through the first member that
// answers this page, the node that served the page first (it may be back).
async function moveOn() {
  const tried = [];
  const candidates = [];
  if (watch.base !== "") candidates.push({ id: watch.servedBy, bases: [""] });
  const others = Array.from(live.nodes.values()).filter(n => n.id !== watch.id && n.id !== watch.servedBy)
    .sort((a, b) => a.id.localeCompare(b.id));
  for (const n of others) candidates.push({ id: n.id, bases: n.http ? memberBases(n.http) : [] });
  for (const c of candidates) {
    if (!c.bases.length) { tried.push({ id: c.id, where: null, why: "its HTTP address is not known" }); continue; }
    for (const base of c.bases) {
      const r = await probeMember(base);
      if (r.ok) { watchThrough(r.id, base); return; }
      tried.push({ id: c.id, where: base || location.origin, why: r.why });
    }
  }
  watch.blind = { since: watch.blind ? watch.blind.since : Date.now(), tried };
}

function watchThrough(id, base) {
  watch.lost = { id: watch.id, host: watch.host, why: watch.why || "it stopped answering" };
  const lost = live.nodes.get(watch.id);
  if (lost) pageNote(lost, "WARN", `${watch.id} stopped answering this page; now watching through ${id}`,
                     [["reason", watch.lost.why]]);
  watch.id = id;
  watch.base = base;
  watch.host = base ? base.replace(/^[a-z]+:\/\//, "") : location.host;
  watch.failures = 0;
  watch.blind = null;
  reopenAll();
  refreshPeers();
}

// Every stream again, through the node the page now reads through.
function reopenAll() {
  for (const n of live.nodes.values()) {
    if (n.es) { n.es.close(); n.es = null; }
    connect(n);
  }
  scheduleRender();
}

// What a card says while the page reaches no member: why this browser has
// no view of that node, not that the node is unreachable (it may be fine).
function blindReason(id) {
  if (id === watch.id) return `${id} served this page and stopped answering it: ${watch.why || "no answer"}`;
  const tried = triedById().get(id);
  return tried ? `this browser cannot read it: ${tried}` : "not tried";
}

// Each member the page tried, in one line: where, and why not (once when
// every address failed the same way).
function triedById() {
  const by = new Map();
  for (const t of (watch.blind ? watch.blind.tried : [])) {
    const e = by.get(t.id) || { where: [], why: [] };
    if (t.where) e.where.push(t.where);
    if (!e.why.includes(t.why)) e.why.push(t.why);
    by.set(t.id, e);
  }
  return new Map(Array.from(by, ([id, e]) => [id, (e.where.length ? `at ${e.where.join(" or ")}: ` : "") + e.why.join("; ")]));
}

function liveView() {
  const nodes = Array.from(live.nodes.values()).sort((a, b) => a.id.localeCompare(b.id));
  const leader = nodes.find(n => isUp(n) && n.status && n.status.state === "Leader");
  const leaderPeers = new Map(((leader && leader.status.peers) || []).map(p => [p.id, p]));
  const events = [];
  for (const list of live.events.values()) for (const r of list) events.push(r);
  return {
    nodes: nodes.map(n => {
      const st = n.status || {};
      const conn = watch.blind ? "blind" : connState(n);
      const up = conn === "up";
      let lastContact = st.last_contact;
      // the leader's view of a follower: since it last answered, and how far behind it is
      let lag = null;
      if (leaderPeers.has(n.id) && n !== leader) {
        lastContact = leaderPeers.get(n.id).last_contact;
        lag = leaderPeers.get(n.id).lag_entries ?? null;
      }
      const conf = (st.latest_configuration || []).find(s => s.id === n.id);
      return {
        id: n.id, up, conn, failure: conn === "blind" ? blindReason(n.id) : n.failure,
        role: up ? (st.state || "?") : ({ connecting: "connecting…", blind: "No view" }[conn] || "Unreachable"), term: st.term,
        commit: st.commit_index, applied: st.applied_index, last: st.last_log_index,
        snapshot: st.last_snapshot_index || 0, voter: (conf ? conf.suffrage : n.suffrage) === "Voter",
        suffrage: conf ? conf.suffrage : (n.suffrage || "?"), lastContact, lag, leader: st.leader ? st.leader.id : null,
        http: n.http, entries: n.entries, faultInjection: !!st.fault_injection,
      };
    }),
    events,
    current: null,
  };
}

// ---------------------------------------------------------------- replay

async function loadScenarios() {
  let r;
  try { r = await getJSON(api("/ui/replay")); } catch (e) { say(`replay: ${e}`, true); return; }
  const sel = $("#replay-scenario");
  sel.innerHTML = ((r.body && r.body.scenarios) || []).map(s => `<option>${esc(s)}</option>`).join("");
}

function showReplay(doc) {
  replay.data = doc;
  replay.step = 0;
  const slider = $("#replay-slider");
  slider.max = String(Math.max(0, doc.steps.length - 1));
  slider.value = "0";
  scheduleRender();
}

async function loadReplay(name) {
  say(`loading scenario ${name} ...`);
  let r;
  try { r = await getJSON(api(`/ui/replay?scenario=${encodeURIComponent(name)}`)); } catch (e) { say(`replay: ${e}`, true); return; }
  if (!r.ok) { say(`replay: ${(r.body && r.body.error) || r.status}`, true); return; }
  showReplay(r.body);
  say(`scenario ${name}: ${r.body.steps.length} steps` + (r.body.passed ? ", every invariant held" : `, VIOLATION: ${r.body.error}`),
      !r.body.passed);
}

// Trace files recorded with RAFT_TRACE: the serving node replays them through
// a fresh core and answers the same document a scenario gives.
async function loadTraces(files) {
  if (!files || !files.length) return;
  const form = new FormData();
  for (const f of files) form.append("trace", f, f.name);
  say(`replaying ${files.length} trace file${files.length > 1 ? "s" : ""} ...`);
  let r;
  try { r = await getJSON("/ui/replay", { method: "POST", body: form }); } catch (e) { say(`replay: ${e}`, true); return; }
  if (!r.ok) { say(`replay: ${(r.body && r.body.error) || r.status}`, true); return; }
  showReplay(r.body);
  const counts = Object.values(r.body.replayed || {});
  const steps = counts.reduce((n, c) => n + c.steps, 0);
  say(`traces ${r.body.scenario}: ${steps} core steps replayed in ${r.body.steps.length} batches` +
      (r.body.passed ? ", no divergence" : `, DIVERGENCE: ${r.body.error.split("\n")[0]}`), !r.body.passed);
}

function setStep(i) {
  if (!replay.data) return;
  replay.step = Math.max(0, Math.min(replay.data.steps.length - 1, i));
  $("#replay-slider").value = String(replay.step);
  scheduleRender();
}

function showPlaying(playing) {
  const b = $("#replay-play");
  b.classList.toggle("active", playing);
  b.textContent = playing ? "\u275A\u275A Pause" : "\u25B6 Play";
  b.setAttribute("aria-label", playing ? "pause" : "play");
  b.setAttribute("aria-pressed", String(playing));
  b.title = playing ? "pause (space)" : "play (space)";
}

function togglePlay() {
  if (replay.timer) { clearInterval(replay.timer); replay.timer = null; showPlaying(false); return; }
  if (!replay.data) return;
  if (replay.step >= replay.data.steps.length - 1) setStep(0);   // play again from the start
  showPlaying(true);
  replay.timer = setInterval(() => {
    if (!replay.data || replay.step >= replay.data.steps.length - 1) { togglePlay(); return; }
    setStep(replay.step + 1);
  }, 600);
}

// ---------------------------------------------------------------- replay narration
// The recorder labels a step with the simulator's event ("Receive RequestVote
// n2->n1", "Timeout", "Step n1"); the page says it in words, names the node
// that acted, and lists what changed on the cards, computed from the same
// states the cards show, so the narration cannot disagree with them.

function actorOf(step, fallback) {
  if (fallback) return fallback;
  if (step.logs.length) return step.logs[0].node;
  return null;
}

function saysPreVote(step, nodeId) {
  return step.logs.some(l => l.node === nodeId && /pre-?vote/i.test(l.message)) ||
    step.messages.some(m => m.startsWith(`${nodeId} -> `) && m.includes("(pre-vote"));
}

// Why a card and a log line seem to disagree: a candidate's line names the
// term it campaigns for, but with pre-vote it stays in its old term until a
// quorum said it could win.
function explanations(step) {
  const out = [];
  for (const l of step.logs) {
    if (l.message !== "entering candidate state") continue;
    const term = (l.fields.find(([k]) => k === "term") || [])[1];
    const card = step.nodes.find(s => s.id === l.node);
    if (term && card && String(card.term) !== String(term) && saysPreVote(step, l.node)) {
      out.push(`${l.node}'s line says term=${term} but its card says term ${card.term}: with pre-vote a ` +
               `candidate first asks whether it would win term ${term}, and moves to that term only once a ` +
               `quorum says yes, so that a server cut off from the others cannot drive the terms up (thesis \u00a79.6)`);
    }
  }
  return out;
}

function headline(step, changes) {
  const label = step.label;
  let m;
  if ((m = /^Start (\S+)$/.exec(label))) return `${m[1]} starts`;
  if ((m = /^Crash (\S+)$/.exec(label))) return `${m[1]} crashes (kill -9): only what it wrote to disk survives`;
  if ((m = /^Timeout(?: (\S+))?$/.exec(label))) {
    const who = actorOf(step, m[1] || (changes[0] && changes[0].id));
    return who ? `${who}'s election timer fires` : "an election timer fires";
  }
  if ((m = /^Receive (\w+) (\S+)->(\S+)$/.exec(label))) {
    const [, type, from, to] = m;
    let what = type;
    if (type.startsWith("RequestVote") && saysPreVote(step, to)) what += " (pre-vote)";
    // a heartbeat's answer is a heartbeat, which the recorder leaves out
    if (type === "AppendEntries" && !step.messages.length) what += " (a heartbeat)";
    return `${to} receives ${what} from ${from}`;
  }
  if ((m = /^Propose (\S+) (.*)$/.exec(label))) return `a client proposes ${m[2]} to ${m[1]}`;
  if ((m = /^TransferLeadership (\S+)$/.exec(label))) return `${m[1]} is asked to hand leadership over`;
  if ((m = /^Campaign (\S+)$/.exec(label))) return `${m[1]} is told to campaign now`;
  if ((m = /^Snapshot (\S+)$/.exec(label))) return `${m[1]} takes a snapshot`;
  if ((m = /^ChangeMembership (\S+)/.exec(label))) return `${m[1]} is asked to change the membership: ${label.slice(m[0].length).trim()}`;
  if ((m = /^(?:Step )?(n\S*)$/.exec(label))) return `${m[1]} acts on its own (no message arrived)`;
  if (label === "end") return "end of the scenario";
  return label;
}

const CHANGE_FIELDS = [["term", "term"], ["commit_index", "commit"], ["applied_index", "applied"],
                       ["last_log_index", "last index"], ["last_snapshot_index", "snapshot"]];

function suffrageOf(s) { return !s.up ? null : (s.member ? (s.voter ? "Voter" : "Nonvoter") : "not a member"); }

function stepChanges(prev, step) {
  const before = new Map(((prev && prev.nodes) || []).map(s => [s.id, s]));
  const out = [];
  for (const s of step.nodes) {
    const p = before.get(s.id) || { id: s.id, up: false, role: "Down" };
    const parts = [];
    if (p.up !== s.up) parts.push(s.up ? `starts as ${s.role}, term ${s.term}` : "is down");
    else if (s.up) {
      if (p.role !== s.role) parts.push(`${p.role} \u2192 ${s.role}`);
      for (const [k, name] of CHANGE_FIELDS) {
        if ((p[k] || 0) !== (s[k] || 0)) parts.push(`${name} ${p[k] || 0} \u2192 ${s[k] || 0}`);
      }
      if (suffrageOf(p) !== suffrageOf(s)) parts.push(`${suffrageOf(p)} \u2192 ${suffrageOf(s)}`);
    }
    if (parts.length) out.push({ id: s.id, role: s.up ? s.role : "Down", text: `${s.id}: ${parts.join(", ")}` });
  }
  return out;
}

function replayView() {
  const data = replay.data;
  if (!data || !data.steps.length) return { nodes: [], events: [], current: null };
  const step = data.steps[replay.step];
  const events = [];
  for (let i = 0; i <= replay.step; i++) for (const l of data.steps[i].logs) events.push(l);
  const leader = step.nodes.find(s => s.up && s.role === "Leader");
  return {
    nodes: step.nodes.map(s => ({
      id: s.id, up: s.up, role: s.up ? s.role : "Down", term: s.term, commit: s.commit_index,
      applied: s.applied_index, last: s.last_log_index, snapshot: s.last_snapshot_index || 0,
      voter: !!s.voter, suffrage: s.up ? (s.member ? (s.voter ? "Voter" : "Nonvoter") : "not a member") : "?",
      lastContact: null, lag: null, leader: s.leader, http: null,
      entries: new Map((s.entries || []).map(([i, t, ty]) => [i, [t, ty]])),
    })),
    events,
    current: new Set(step.logs.map(l => l.seq)),
    step, leaderId: leader ? leader.id : null,
  };
}

// ---------------------------------------------------------------- rendering

function render() {
  if (mode === "live") noteTransitions();
  const view = mode === "live" ? liveView() : replayView();
  renderCards(view);
  renderStrips(view);
  renderEvents(view);
  renderControls(view);
  renderWatch();
  if (mode === "replay") renderStep(view);
}

// The banner: which node the page lost, which one it reads through now, or
// why it reaches none.
function renderWatch() {
  const el = $("#watch");
  const isLive = mode === "live";
  $("#served-by").textContent = !watch.servedBy ? "" : `served by ${watch.servedBy} (${location.host})` +
    (watch.id !== watch.servedBy ? ` \u00B7 watching through ${watch.id} (${watch.host})` : "");
  if (!isLive || (!watch.lost && !watch.blind)) { el.hidden = true; return; }
  let html;
  if (watch.blind) {
    const down = watch.id;
    const tried = triedById();
    const reasons = Array.from(tried, ([id, text]) => `<li data-node="${esc(id)}">${esc(id)} ${esc(text)}</li>`).join("");
    const whys = watch.blind.tried.map(t => t.why);
    html = `<strong>${esc(down)} is down</strong>, or out of this browser's reach (${esc(watch.why || "no answer")}), and this
      browser cannot reach any other member, so the cards show nothing live:<ul>${reasons || "<li>no other member is known</li>"}</ul>` +
      (whys.includes(NO_ROUTE) ? "Nothing listens at those addresses, or they are not reachable from this browser (Docker, a tunnel or a proxy). " : "") +
      (whys.includes(CORS_REFUSED) ? "A member lets a page from another address read its views only when that address is one of the members' own. " : "") +
      `The page keeps trying ${esc(down)} and the others; or open the dashboard of a node this browser can reach.`;
    el.dataset.state = "blind";
    el.dataset.down = down;
    delete el.dataset.via;
  } else {
    const own = watch.base === "";
    // a node that only stopped answering this browser (a pause, a route)
    // is not called down while the node the page reads through reaches it
    const lost = live.nodes.get(watch.lost.id);
    const state = lost && isUp(lost) ? "stopped answering this page" : "is down";
    html = `<strong>${esc(watch.lost.id)} ${state}; now watching through ${esc(watch.id)}</strong>
      (${esc(watch.host)}). ${esc(watch.lost.id)} (${esc(watch.lost.host)}) stopped answering this page:
      ${esc(watch.lost.why)}.` + (own ? "" : ` Writing, reading and transferring leadership go through the node
      that served the page: use <a href="${esc(watch.base)}/ui">${esc(watch.id)}'s own dashboard</a> for them.`);
    el.dataset.state = "moved";
    el.dataset.down = watch.lost.id;
    el.dataset.via = watch.id;
  }
  el.classList.toggle("error", !!watch.blind);
  if (watch.html !== html) { el.innerHTML = html; watch.html = html; }   // a link under the pointer stays put
  el.hidden = false;
}

function badge(n) {
  if (n.up) return `<span class="badge up">up</span>`;
  if (mode === "replay") return `<span class="badge down">down</span>`;
  if (n.conn === "connecting") return `<span class="badge connecting">connecting…</span>`;
  if (n.conn === "blind") return `<span class="badge blind" title="${esc(n.failure)}">no view from this browser</span>`;
  return `<span class="badge down" title="${esc(n.failure || "no word from this node")}">unreachable</span>`;
}

function renderCards(view) {
  const html = view.nodes.map(n => `
    <div class="card" data-testid="node-card" data-node="${esc(n.id)}" data-role="${esc(n.role)}" data-up="${n.up}"
         data-conn="${esc(n.conn || (n.up ? "up" : "down"))}">
      <div class="title"><span class="id">${esc(n.id)}</span>
        <span class="role">${esc(n.role)}</span></div>
      <dl>
        <dt>term</dt><dd class="term">${n.term ?? "–"}</dd>
        <dt>commit</dt><dd class="commit">${n.commit ?? "–"}</dd>
        <dt>applied</dt><dd class="applied">${n.applied ?? "–"}</dd>
        <dt>last index</dt><dd class="last">${n.last ?? "–"}</dd>
        <dt>snapshot</dt><dd>${n.snapshot || "–"}</dd>
        <dt>last contact</dt><dd class="last-contact">${n.role === "Leader" ? "(leader)" : (n.lastContact == null ? "–" : n.lastContact + " ms")}</dd>
        <dt>lag</dt><dd class="lag" title="entries of the leader's log this node does not hold yet">${n.role === "Leader" ? "(leader)" : (n.lag == null ? "–" : n.lag + " entries")}</dd>
        <dt>suffrage</dt><dd class="suffrage">${esc(n.suffrage)}</dd>
        <dt>status</dt><dd class="conn">${badge(n)}</dd>
        ${n.http ? `<dt>http</dt><dd>${esc(n.http)}</dd>` : ""}
        ${!n.up && n.failure ? `<dd class="failure">${esc(n.failure)}</dd>` : ""}
      </dl>
    </div>`).join("");
  $("#cards").innerHTML = html || `<span class="muted">no nodes yet</span>`;
}

function renderStrips(view) {
  let hi = 0;
  for (const n of view.nodes) if (n.last && n.last > hi) hi = n.last;
  for (const n of view.nodes) for (const k of n.entries.keys()) if (k > hi) hi = k;
  const lo = Math.max(1, hi - WINDOW + 1);
  const axis = [];
  for (let i = lo; i <= hi; i++) axis.push(`<span class="e">${i % 5 === 0 || i === lo || i === hi ? i : ""}</span>`);
  const rows = [`<div class="strip axis"><span class="name muted">index</span>${axis.join("")}</div>`];
  for (const n of view.nodes) {
    const cells = [];
    for (let i = lo; i <= hi; i++) {
      const e = n.entries.get(i);
      const cls = ["e"];
      if (!e) {
        if (i <= n.snapshot) { cls.push("compacted", "snap"); cells.push(`<span class="${cls.join(" ")}" data-index="${i}" title="index ${i}: in snapshot"></span>`); }
        else cells.push(`<span class="e empty"></span>`);
        continue;
      }
      const [term, type] = e;
      cls.push(type);
      if (n.commit == null || i > n.commit) cls.push("uncommitted");
      if (i === n.commit) cls.push("commit");
      if (i <= n.snapshot) cls.push("snap");
      cells.push(`<span class="${cls.join(" ")}" data-index="${i}" data-term="${term}" style="background-color:${termColour(term)}"
        title="index ${i}, term ${term}, ${type}${i <= (n.commit || 0) ? ", committed" : ""}">${term}</span>`);
    }
    rows.push(`<div class="strip" data-testid="strip" data-strip="${esc(n.id)}">
      <span class="name ${n.up || n.conn === "connecting" ? "" : "down"}">${esc(n.id)}</span>${cells.join("")}
      <span class="meta">commit=${n.commit ?? "–"} snapshot=${n.snapshot || 0} last=${n.last ?? "–"}</span></div>`);
  }
  $("#strips").innerHTML = rows.join("");
}

// raftkv's own writes (each member's HTTP address, other reserved keys) are
// applied like the user's and logged as the same "applied write" line; the
// state machine marks them internal=true (eventlog sends booleans as text).
// The table says what they are and keeps them apart from the user's writes.
function fieldOf(ev, name) {
  const f = ev.fields.find(x => x[0] === name);
  return f ? f[1] : undefined;
}

function internalLabel(ev) {
  if (fieldOf(ev, "internal") !== "true") return null;
  const op = fieldOf(ev, "op"), node = fieldOf(ev, "node"), http = fieldOf(ev, "http");
  if (op === "register-http") return `registered ${node}'s HTTP address` + (http ? ` (${http})` : "");
  if (op === "unregister-http") return `forgot ${node}'s HTTP address (no longer a member)`;
  const key = fieldOf(ev, "key");
  return `raftkv's own write: ${op || "?"}` + (key ? ` ${key}` : "");
}

function eventMatches(ev) {
  if (filter.level && ev.level !== filter.level) return false;
  if (filter.node && ev.node !== filter.node) return false;
  if (!filter.internal && internalLabel(ev)) return false;
  const hay = () => `${ev.logger} ${ev.message} ${internalLabel(ev) || ""} ${ev.fields.map(f => f[0] + "=" + f[1]).join(" ")}`.toLowerCase();
  if (filter.quick && !ev.message.toLowerCase().includes(filter.quick.toLowerCase())) return false;
  if (filter.text && !hay().includes(filter.text.toLowerCase())) return false;
  return true;
}

// A node that fails at the same thing over and over (a leader retrying a dead
// peer) would push everything else out of the table: a line that repeats one
// of the node's last four kinds of line joins that row as a count instead. INFO
// lines are the story (each "Promoting server", each "election won") and are
// never folded; in the replay every line is shown, since each belongs to a step.
// raftkv's own writes fold only with the same own write (the same member's
// address again), never with the user's: a user's write must not vanish into
// a row that shows the last registry entry's fields.
const FOLD_WINDOW = 4;
const FOLDED_LEVELS = new Set(["TRACE", "DEBUG", "WARN", "ERROR"]);

function foldRepeats(events) {
  const rows = [];
  const recent = new Map();   // node id -> its last FOLD_WINDOW rows
  for (const ev of events) {
    const own = internalLabel(ev);
    const key = `${ev.level}|${ev.logger}|${ev.message}` + (own === null ? "" : `|internal|${own}`);
    const mine = recent.get(ev.node) || [];
    const row = ev.note || !FOLDED_LEVELS.has(ev.level) ? null : mine.find(r => r.key === key);
    if (row) { row.count++; row.last = ev; continue; }
    const fresh = { key, first: ev, last: ev, count: 1 };
    rows.push(fresh);
    mine.push(fresh);
    if (mine.length > FOLD_WINDOW) mine.shift();
    recent.set(ev.node, mine);
  }
  return rows;
}

function renderEvents(view) {
  const all = view.events.slice().sort((a, b) => a.time - b.time || a.seq - b.seq);
  const matching = all.filter(eventMatches);
  const rows = mode === "live" ? foldRepeats(matching) : matching.map(ev => ({ first: ev, last: ev, count: 1 }));
  const shown = rows.slice(-SHOW_EVENTS).reverse();
  $("#events tbody").innerHTML = shown.map(({ first: ev, last, count }) => {
    const own = internalLabel(last);
    return `
    <tr class="${esc(ev.level)}${view.current && view.current.has(ev.seq) ? " current" : ""}${ev.note ? " note" : ""}${own ? " internal" : ""}"
        data-node="${esc(ev.node)}" data-seq="${ev.seq}" data-count="${count}"${own ? ` data-internal="${esc(fieldOf(last, "op") || "")}"` : ""}>
      <td>${esc(ev.node)}</td>
      <td>${esc(fmtTime(ev))}${count > 1 ? `<br><span class="muted">to ${esc(fmtTime(last))}</span>` : ""}</td>
      <td class="level">${esc(ev.level)}</td>
      <td>${esc(ev.logger)}</td><td class="message">${own
        ? `<span class="own" title="raftkv's own write, not a user's: ${esc(ev.message)} ${esc(fieldOf(last, "op") || "")}">${esc(own)}</span>`
        : esc(ev.message)}${count > 1
        ? ` <span class="repeat" title="${count} times from ${esc(fmtTime(ev))} to ${esc(fmtTime(last))}; the fields are the last one's">\u00D7${count}</span>` : ""}</td>
      <td class="fields">${last.fields.map(([k, v]) => `${esc(k)}=${esc(v)}`).join(" ")}</td></tr>`;
  }).join("");
  const hiddenOwn = filter.internal ? 0 : all.filter(ev => internalLabel(ev)).length;
  $("#f-count").textContent = `${matching.length} of ${all.length} events` +
    (rows.length < matching.length ? ` in ${rows.length} rows (repeats counted)` : "") +
    (hiddenOwn ? `, ${hiddenOwn} of raftkv's own writes hidden` : "");
  const nodeSel = $("#f-node");
  const ids = Array.from(new Set(view.nodes.map(n => n.id).concat(all.map(ev => ev.node)))).sort();
  const have = $$("option", nodeSel).map(o => o.value).filter(Boolean);
  if (ids.join() !== have.join()) {
    nodeSel.innerHTML = `<option value="">any node</option>` + ids.map(i => `<option>${esc(i)}</option>`).join("");
    nodeSel.value = ids.includes(filter.node) ? filter.node : "";
  }
}

function syncSelect(sel, values, first) {
  const have = $$("option", sel).map(o => o.value);
  const want = (first ? [first[0]] : []).concat(values);
  if (have.join() === want.join()) return;
  const keep = sel.value;
  sel.innerHTML = (first ? `<option value="${esc(first[0])}">${esc(first[1])}</option>` : "") +
    values.map(v => `<option>${esc(v)}</option>`).join("");
  if (want.includes(keep)) sel.value = keep;
}

function renderControls(view) {
  if (mode !== "live") return;
  syncSelect($("#transfer-to"), view.nodes.filter(n => n.voter).map(n => n.id), ["", "any voter"]);
  syncSelect($("#fault-node"), view.nodes.map(n => n.id));
  $("#faults").hidden = !view.nodes.some(n => n.faultInjection);
  const up = view.nodes.filter(n => n.up).length;
  const connecting = view.nodes.filter(n => n.conn === "connecting").length;
  $("#conn").textContent = watch.blind ? "no member answers this browser" :
    `${up}/${view.nodes.length} nodes streaming` + (connecting ? `, ${connecting} connecting…` : "");
  // writes, reads, transfers and faults go to the node that served the page
  // (the members let other pages read their views, never act through them)
  const away = watch.base !== "";
  for (const b of $$("#controls button")) {
    b.disabled = away;
    if (away) b.title = `${watch.servedBy}, which served this page, is down: open ${watch.id}'s own dashboard to do this`;
    else b.removeAttribute("title");
  }
}

function renderStep(view) {
  const data = replay.data;
  if (!data) { $("#replay-pos").textContent = ""; $("#replay-step").innerHTML = ""; return; }
  const step = view.step;
  const changes = stepChanges(replay.step ? data.steps[replay.step - 1] : null, step);
  $("#replay-pos").textContent = `step ${replay.step + 1} / ${data.steps.length}`;
  $("#replay-step").innerHTML =
    step.notes.map(n => `<div class="note" data-testid="replay-note">scenario: ${esc(n)}</div>`).join("") +
    `<div><span class="label" data-testid="replay-headline">${esc(headline(step, changes))}</span>
       <span class="muted">t=${step.t}ms &middot; ${esc(step.label)}</span></div>` +
    explanations(step).map(e => `<div class="note" data-testid="replay-why">why: ${esc(e)}</div>`).join("") +
    `<div class="changes" data-testid="replay-changes">` +
    (changes.length ? changes.map(c => `<span class="change" data-node="${esc(c.id)}" data-role="${esc(c.role)}">${esc(c.text)}</span>`).join("; ")
                    : `<span class="muted">no change on the cards</span>`) + `</div>` +
    (step.messages.length ? `<div class="msgs"><span class="muted">sends:</span> ` : "") +
    step.messages.map(m => `<div class="msg">${esc(m)}</div>`).join("") + (step.messages.length ? "</div>" : "");
}

// ---------------------------------------------------------------- actions

async function act(method, url, what) {
  try {
    const r = await getJSON(url, { method });
    const body = r.body || {};
    if (!r.ok) { say(`${what}: HTTP ${r.status}: ${body.error || "failed"}`, true); return null; }
    return body;
  } catch (e) {
    say(`${what}: ${e}`, true);
    return null;
  }
}

async function write() {
  const key = $("#kv-key").value, value = $("#kv-value").value;
  if (!key) { say("write: enter a key", true); return; }
  const body = await act("POST", `/set?key=${encodeURIComponent(key)}&value=${encodeURIComponent(value)}`, "write");
  if (body) {
    const el = $("#op-result");
    say(`wrote ${key}=${value} at index ${body.index} (served by ${body.served_by})`);
    el.dataset.index = String(body.index);
  }
}

async function read() {
  const key = $("#kv-key").value;
  if (!key) { say("read: enter a key", true); return; }
  const r = await getJSON(`/get?key=${encodeURIComponent(key)}`);
  if (r.status === 404) say(`${key} is not set`);
  else if (!r.ok) say(`read: HTTP ${r.status}: ${(r.body && r.body.error) || "failed"}`, true);
  else say(`${key} = ${r.body.value} (linearizable read, served by ${r.body.served_by})`);
}

async function transfer() {
  const to = $("#transfer-to").value;
  const body = await act("POST", "/transfer-leadership" + (to ? `?to=${encodeURIComponent(to)}` : ""), "transfer leadership");
  if (body) say(`leadership transferred from ${body.from}${body.to ? " to " + body.to : ""}`);
}

async function fault(method, payload) {
  const node = $("#fault-node").value;
  const others = Array.from(live.nodes.keys()).filter(i => i !== node);
  const dur = parseInt($("#fault-duration").value, 10);
  const body = Object.assign({}, payload(others));
  if (dur > 0) body.duration_s = dur;
  try {
    const resp = await fetch(`/ui/faults?node=${encodeURIComponent(node)}`, {
      method, headers: { "Content-Type": "application/json" },
      body: method === "DELETE" ? undefined : JSON.stringify(body),
    });
    let out = {};
    try { out = await resp.json(); } catch (e) { out = {}; }
    if (!resp.ok) say(`fault on ${node}: HTTP ${resp.status}: ${out.error || "failed"}`, true);
    else say(method === "DELETE" ? `healed ${node}` : `fault on ${node}: ${JSON.stringify(body)}`);
  } catch (e) {
    say(`fault on ${node}: ${e}`, true);
  }
}

function setMode(m) {
  mode = m;
  document.body.classList.toggle("replay", m === "replay");
  $("#replay-bar").hidden = m !== "replay";
  $$(".tab").forEach(b => b.classList.toggle("active", b.dataset.mode === m));
  if (m === "replay" && !$("#replay-scenario").options.length) loadScenarios();
  scheduleRender();
}

function wire() {
  $("#kv-write").onclick = write;
  $("#kv-read").onclick = read;
  $("#kv-value").addEventListener("keydown", e => { if (e.key === "Enter") write(); });
  $("#transfer").onclick = transfer;
  $("#fault-isolate").onclick = () => fault("POST", others => ({ drop: others }));
  $("#fault-delay-btn").onclick = () => fault("POST", others => ({ delay_ms: parseInt($("#fault-delay").value, 10) || 0, peers: others }));
  $("#fault-heal").onclick = () => fault("DELETE", () => ({}));
  $("#f-text").oninput = e => { filter.text = e.target.value; scheduleRender(); };
  $("#f-level").onchange = e => { filter.level = e.target.value; scheduleRender(); };
  $("#f-node").onchange = e => { filter.node = e.target.value; scheduleRender(); };
  $("#f-internal").onchange = e => { filter.internal = e.target.checked; scheduleRender(); };
  $$("button.q").forEach(b => b.onclick = () => {
    filter.quick = filter.quick === b.dataset.q ? "" : b.dataset.q;
    $$("button.q").forEach(x => x.classList.toggle("on", x.dataset.q === filter.quick));
    scheduleRender();
  });
  $$(".tab").forEach(b => b.onclick = () => setMode(b.dataset.mode));
  $("#replay-load").onclick = () => loadReplay($("#replay-scenario").value);
  $("#replay-file").onchange = e => loadTraces(e.target.files);
  $("#replay-first").onclick = () => setStep(0);
  $("#replay-prev").onclick = () => setStep(replay.step - 1);
  $("#replay-next").onclick = () => setStep(replay.step + 1);
  $("#replay-play").onclick = togglePlay;
  $("#replay-slider").oninput = e => setStep(parseInt(e.target.value, 10));
  document.addEventListener("keydown", e => {
    if (mode !== "replay" || e.target.closest("input, select, textarea")) return;
    const keys = { ArrowLeft: () => setStep(replay.step - 1), ArrowRight: () => setStep(replay.step + 1),
                   Home: () => setStep(0), " ": togglePlay };
    if (e.target.closest("button") && (e.key === " " || e.key === "Enter")) return;  // the button's own click
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
}

async function boot() {
  wire();
  try {
    const r = await getJSON("/status");
    if (r.ok) { watch.id = watch.servedBy = r.body.id; renderWatch(); }
  } catch (e) { /* the streams will tell */ }
  const params = new URLSearchParams(location.search);
  if (params.get("scenario")) {
    setMode("replay");
    await loadScenarios();
    $("#replay-scenario").value = params.get("scenario");
    await loadReplay(params.get("scenario"));
    if (params.get("step")) setStep(parseInt(params.get("step"), 10) - 1);
  }
  await refreshPeers();
  setInterval(refreshPeers, 2000);
  setInterval(scheduleRender, 1000);  // notice silent (unreachable) nodes
}

boot();
