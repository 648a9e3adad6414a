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
  // The page rendered the newest records; the socket continues after the last of them.
  let lastSeq = Number(log.dataset.after || 0);
  let ended = false;
  // The page was rendered before the work ended (as rendered, or as the socket first reported): reload once at the
  // end for the results. Rendered active counts too: the work may end before the socket's first status arrives.
  let sawActive = !cancelForm.hidden;
  let retry = 500;

  const label = (s) => s.replace("_", " ").replace(/^./, (c) => c.toUpperCase());
  const fmt = (sec) => (sec === null || sec === undefined ? "—" : `${sec.toFixed(1)} s`);

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
      frag.appendChild(span);
    }
    if (frag.childNodes.length) log.hidden = false;  // hidden while a removed log had nothing new
    log.appendChild(frag);
    if (nearBottom) log.scrollTop = log.scrollHeight;
  }

  function showStatus(a) {
    if (a.active) sawActive = true;
    statusBadge.textContent = label(a.status);
    statusBadge.dataset.status = a.status;
    statusBadge.className = `badge status-${a.status}`;
    errorLine.hidden = !a.error;
    errorLine.textContent = a.error || "";
    waitingLine.hidden = !a.waiting;
    waitingLine.textContent = a.waiting || "";
    if (a.log_removed) {  // the full log was removed by retention: say so, with its summary (no error)
      removedLine.hidden = false;
      removedLine.textContent = a.log_removed;
    }
    cancelForm.hidden = !a.active;
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

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/attempts/${attemptId}/logs/?after=${lastSeq}`);
    ws.onopen = () => { state.textContent = "live"; retry = 500; };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "logs") appendRecords(msg.records);
      else if (msg.type === "status") showStatus(msg.attempt);
      else if (msg.type === "end") {
        ended = true;
        state.textContent = "complete";
        ws.close();
        if (sawActive) setTimeout(() => window.location.reload(), 300);  // diff, follow-up form, PR button
      }
    };
    ws.onclose = (event) => {
      if (ended) return;
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
      state.textContent = "reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }
  connect();
})();
