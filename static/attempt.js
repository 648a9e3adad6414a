// Live logs of an attempt: the server sends history, then new records, then "end".
(() => {
  const script = document.getElementById("attempt-script");
  const attemptId = script.dataset.attempt;
  const log = document.getElementById("log");
  const state = document.getElementById("live-state");
  const statusBadge = document.getElementById("attempt-status");
  const runs = document.getElementById("runs");
  const errorLine = document.getElementById("attempt-error");
  const waitingLine = document.getElementById("attempt-waiting");
  const removedLine = document.getElementById("log-removed");
  const cancelForm = document.getElementById("cancel-form");
  const push = document.getElementById("push");
  // The page rendered the newest records; the socket continues after the last of them.
  let lastSeq = Number(log.dataset.after || 0);
  let ended = false;
  // The page was rendered before the work ended (as rendered, or as the socket first reported): reload once at the
  // end for the results. Rendered active counts too: the work may end before the socket's first status arrives.
  let sawActive = !cancelForm.hidden;
  // A lost socket is noticed (its close, or no answer to a ping) and opened again, waiting longer after each
  // failure (with jitter, so many pages do not knock at once after a server restart); what the page shows stays.
  let retry = 500;
  let connects = 0;
  let socket = null;
  let pingTimer = null;
  let answered = true;
  const PING_MS = 20000;

  const label = (s) => s.replace("_", " ").replace(/^./, (c) => c.toUpperCase());
  const fmt = (sec) => (sec === null || sec === undefined ? "—" : `${sec.toFixed(1)} s`);

  // A long tool output's log line ends with "[full output #<run>.<number>]": it becomes a collapsed "show full
  // output" that loads the whole (masked) output when first opened. Records are only ever appended, so what the
  // user opened stays open while the log goes on.
  const FULL_OUTPUT = /\[full output #(\d+)\.(\d+)\]/g;

  function loadOutput(details, run, number) {
    const pre = details.querySelector("pre");
    pre.textContent = "loading…";
    fetch(`/attempts/${attemptId}/runs/${run}/outputs/${number}/`, { credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((data) => {
        const cut = data.chars > data.kept ? `\n… (${data.chars - data.kept} more characters were not kept)` : "";
        pre.textContent = data.text + cut;
        details.dataset.loaded = "true";
      })
      .catch((status) => {
        pre.textContent = status === 404 ? "The full output was not kept." : "The full output could not be loaded.";
        details.dataset.loaded = "";
      });
  }

  function fullOutputs(span) {
    const text = span.textContent;
    if (!text.includes("[full output #")) return;
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(FULL_OUTPUT)) {
      parts.push(document.createTextNode(text.slice(last, match.index)));
      const details = document.createElement("details");
      details.className = "full-output";
      details.setAttribute("data-testid", "full-output");
      const summary = document.createElement("summary");
      summary.textContent = "show full output";
      const pre = document.createElement("pre");
      details.append(summary, pre);
      const [run, number] = [match[1], match[2]];
      details.addEventListener("toggle", () => {
        if (details.open && !details.dataset.loaded) loadOutput(details, run, number);
      });
      parts.push(details);
      last = match.index + match[0].length;
    }
    if (!parts.length) return;
    parts.push(document.createTextNode(text.slice(last)));
    span.replaceChildren(...parts);
  }

  function showPush(p) {
    if (!push) return;
    push.hidden = !p || !p.branch;
    if (push.hidden) return;
    document.getElementById("push-branch").textContent = p.branch;
    document.getElementById("push-head").textContent = p.head.slice(0, 12);
    document.getElementById("push-notes").replaceChildren(...p.notes.map((note) => {
      const li = document.createElement("li");
      li.textContent = note;
      return li;
    }));
    const table = document.getElementById("push-commits");
    table.hidden = !p.commits.length;
    table.tBodies[0].replaceChildren(...p.commits.map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.commit = c.id;
      const id = document.createElement("code");
      id.textContent = c.id.slice(0, 8);
      const who = document.createElement("td");
      who.textContent = `${c.author} <${c.email}>`;
      if (c.committer !== undefined) {
        const by = document.createElement("span");
        by.className = "muted";
        by.textContent = `committed by ${c.committer} <${c.committer_email}>`;
        who.append(document.createElement("br"), by);
      }
      const badge = document.createElement("span");
      badge.className = c.own ? "badge badge-muted" : "badge badge-warn";
      badge.textContent = c.own ? "Anyon" : "agent";
      const cells = [id, c.subject, who, badge].map((content) => {
        if (content instanceof HTMLTableCellElement) return content;
        const td = document.createElement("td");
        if (typeof content === "string") td.textContent = content;
        else td.appendChild(content);
        return td;
      });
      tr.append(...cells);
      return tr;
    }));
    const more = document.getElementById("push-more");
    more.hidden = !p.more;
    more.textContent = `… and ${p.more} more commit${p.more === 1 ? "" : "s"}.`;
  }

  function appendRecords(records) {
    const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const frag = document.createDocumentFragment();
    for (const r of records) {
      if (r.seq <= lastSeq) continue;  // never show a record twice
      lastSeq = r.seq;
      const span = document.createElement("span");
      span.className = r.stream;
      span.dataset.seq = r.seq;
      span.textContent = r.text;
      if (r.stream === "agent") fullOutputs(span);
      frag.appendChild(span);
    }
    if (frag.childNodes.length) log.hidden = false;  // hidden while a removed log had nothing new
    log.appendChild(frag);
    if (nearBottom) log.scrollTop = log.scrollHeight;
  }

  function showStatus(a) {
    if (a.active) sawActive = true;
    // The badge follows what runs: the attempt, else its follow-up or pull request.
    const badge = a.badge || { status: a.status, label: label(a.status) };
    statusBadge.textContent = badge.label;
    statusBadge.dataset.status = badge.status;
    statusBadge.className = `badge status-${badge.status}`;
    errorLine.hidden = !a.error;
    errorLine.textContent = a.error || "";
    waitingLine.hidden = !a.waiting;
    waitingLine.textContent = a.waiting || "";
    if (a.log_removed) {  // the full log was removed by retention: say so, with its summary (no error)
      removedLine.hidden = false;
      removedLine.textContent = a.log_removed;
    }
    cancelForm.hidden = !a.active;
    if ("push" in a) showPush(a.push);
    showBlocks(a.blocks, a.active);
    // Follow-up, pull request and delete wait for the work to end (the page reloads then).
    for (const form of document.querySelectorAll(".when-idle")) form.hidden = a.active;
    runs.replaceChildren(...a.runs.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.run = r.id;
      const cells = [r.title || r.kind, null, r.exit_code === null ? "—" : String(r.exit_code), fmt(r.duration)];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        if (i === 1) {
          const badge = document.createElement("span");
          badge.className = `badge status-${r.status}`;
          badge.textContent = label(r.status);
          td.appendChild(badge);
        } else td.textContent = text;
        tr.appendChild(td);
      });
      return tr;
    }));
  }

  // The blocked lines (sealed runs): one per refusal, kept by id. A line already shown is only updated (its count,
  // what was asked for it), so a live update never replaces what the user is about to click.
  const network = document.getElementById("network");
  const blockList = document.getElementById("network-blocks");
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]");

  function allowForm(b) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = network.dataset.allowUrl;
    form.className = "inline allow-form";
    for (const [name, value] of [["csrfmiddlewaretoken", csrf ? csrf.value : ""], ["host", b.host], ["port", b.port]]) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.appendChild(input);
    }
    for (const [text, to] of [["Allow for this attempt", ""], ["Add to this repository's policy", "repository"]]) {
      const button = document.createElement("button");
      button.type = "submit";
      button.className = "link";
      button.style.color = "var(--accent)";
      button.textContent = text;
      if (to) { button.name = "to"; button.value = to; }
      form.appendChild(button);
    }
    return form;
  }

  function blockLine(b) {
    const li = document.createElement("li");
    li.dataset.block = b.id;
    li.setAttribute("data-testid", "blocked-line");
    const what = document.createElement("span");
    what.className = "blocked-what";
    const target = document.createElement("code");
    target.textContent = b.port ? `${b.host}:${b.port}` : b.host;
    what.appendChild(target);
    if (b.method) {
      const request = document.createElement("code");
      request.textContent = `${b.method} ${b.path || "/"}`;
      what.append(" ", request);
    }
    what.append(` ${b.reason}`);
    const count = document.createElement("span");
    count.className = "muted blocked-count";
    const state = document.createElement("span");
    state.className = "blocked-state";
    state.setAttribute("data-testid", "blocked-state");
    li.append(what, " ", count, " ", state);
    return li;
  }

  // An allow is sent without leaving the page: what the user opened or typed stays; the line follows live.
  if (network) {
    const message = document.getElementById("network-message");
    network.addEventListener("submit", async (event) => {
      const form = event.target.closest(".allow-form");
      if (!form) return;
      event.preventDefault();
      const body = new FormData(form);
      if (event.submitter && event.submitter.name) body.append(event.submitter.name, event.submitter.value);
      for (const button of form.querySelectorAll("button")) button.disabled = true;
      let answer = { ok: false, message: "The server did not answer; try again." };
      try {
        const response = await fetch(form.action, {
          method: "POST", body, headers: { Accept: "application/json" }, credentials: "same-origin",
        });
        answer = await response.json();
      } catch (err) { /* keeps the sentence above */ }
      message.hidden = false;
      message.className = answer.ok ? "notice notice-info" : "error";
      message.textContent = answer.message;
      if (answer.ok) form.remove();
      else for (const button of form.querySelectorAll("button")) button.disabled = false;
    });
  }

  function showBlocks(blocks, active) {
    if (!network || !blocks) return;
    document.getElementById("network-empty").hidden = blocks.length > 0;
    const mayAllow = network.dataset.mayAllow === "1" && active;
    for (const b of blocks) {
      let li = blockList.querySelector(`li[data-block="${b.id}"]`);
      if (!li) {
        li = blockLine(b);
        blockList.appendChild(li);
      }
      li.querySelector(".blocked-count").textContent = b.count > 1 ? `${b.count}×` : "";
      const a = b.allowance;
      let text = "";
      if (a && a.state === "applied") text = `allowed for this attempt by ${a.by}`;
      else if (a && a.state === "pending") text = "allowing… (the worker adds it within a second)";
      else if (a) text = `not allowed: ${a.detail}`;
      else if (b.port && !mayAllow && network.dataset.note) text = network.dataset.note;
      const state = li.querySelector(".blocked-state");
      if (state.textContent !== text) state.textContent = text;
      const wantForm = mayAllow && b.port && (!a || a.state === "refused");
      const form = li.querySelector(".allow-form");
      if (wantForm && !form) li.appendChild(allowForm(b));
      else if (!wantForm && form) form.remove();
    }
  }

  // Something typed on the page (a follow-up) or a full output the user opened is never thrown away by the reload
  // at the end.
  const typedSomething = () =>
    [...document.querySelectorAll("textarea, input[type=text]")].some((el) => el.value) ||
    document.querySelector("details.full-output[open]") !== null;

  function finish() {
    ended = true;
    state.textContent = "complete";
    if (!sawActive) return;
    if (typedSomething()) {  // the results are on the page after a reload; offer it instead of doing it
      state.textContent = "complete: reload the page for the results";
      return;
    }
    setTimeout(() => window.location.reload(), 300);  // diff, follow-up form, PR button
  }

  function reconnectSoon() {
    state.textContent = "reconnecting…";
    const delay = retry * (0.75 + Math.random() / 2);
    retry = Math.min(retry * 2, 15000);
    setTimeout(connect, delay);
  }

  function connect() {
    if (ended || (socket && socket.readyState < WebSocket.CLOSING)) return;  // one socket at a time
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/attempts/${attemptId}/logs/?after=${lastSeq}`);
    socket = ws;
    ws.onopen = () => {
      connects += 1;
      state.dataset.connects = String(connects);
      state.textContent = "live";
      answered = true;
      clearInterval(pingTimer);
      pingTimer = setInterval(() => {  // a socket that went away without a close (a dropped connection)
        if (!answered) {  // its close handshake could wait a long time: give it up and open another now
          clearInterval(pingTimer);
          ws.onclose = null;
          ws.close();
          reconnectSoon();
          return;
        }
        answered = false;
        ws.send(JSON.stringify({ type: "ping" }));
      }, PING_MS);
    };
    ws.onmessage = (event) => {
      answered = true;
      retry = 500;  // the server answers: the next loss starts the backoff again
      const msg = JSON.parse(event.data);
      if (msg.type === "logs") appendRecords(msg.records);
      else if (msg.type === "status") showStatus(msg.attempt);
      else if (msg.type === "end") {
        ws.close();
        finish();
      }
    };
    ws.onclose = (event) => {
      clearInterval(pingTimer);
      if (ended || socket !== ws) return;
      // Closes that knocking again cannot fix: say why, and stop (the log shown so far stays on the page).
      const final = {
        4401: "not live: you were signed out; sign in again, then reload",
        4404: "not live: this attempt is gone or not yours",
        4429: "not live: too many open live views; close some tabs, then reload",
      }[event.code];
      if (final) {
        state.textContent = final;
        return;
      }
      reconnectSoon();
    };
  }
  // Back online (a laptop waking up): try at once instead of waiting out the backoff.
  window.addEventListener("online", () => {
    if (!ended && socket && socket.readyState !== WebSocket.OPEN) { retry = 500; socket.close(); connect(); }
  });
  for (const span of log.querySelectorAll("span.agent")) fullOutputs(span);
  connect();
})();
