// The environment page's live sections: observe mode's proposed setup policy, the repository's recent runs with
// their setup state, and the environment's snapshots. The server pushes a section as it renders it now (an attempt
// moved on, a setup ran, a snapshot was taken, used or dropped elsewhere, the policy changed); only that section's
// slot is replaced. No section holds a field the user types in, and the environment form and the setup secret form
// are never touched, so a live update throws away nothing typed.
(() => {
  const state = document.getElementById("live-state");
  if (!state) return;
  const slots = {};
  document.querySelectorAll("[data-live-slot]").forEach((slot) => { slots[slot.dataset.liveSlot] = slot; });
  const proto = location.protocol === "https:" ? "wss" : "ws";
  // Closes that knocking again cannot fix: say why, and stop (the sections shown so far stay on the page).
  const FINAL = {
    4401: "not live: you were signed out; sign in again, then reload",
    4404: "not live: not a repository's page",
    4429: "not live: too many open live views; close some tabs, then reload",
  };
  let retry = 500;
  let socket = null;
  let connects = 0;

  function reconnectSoon() {
    state.textContent = "reconnecting…";
    const delay = retry * (0.75 + Math.random() / 2);
    retry = Math.min(retry * 2, 15000);
    setTimeout(connect, delay);
  }

  function connect() {
    if (socket && socket.readyState < WebSocket.CLOSING) return;  // one socket at a time
    const ws = new WebSocket(`${proto}://${location.host}${state.dataset.liveUrl}`);
    socket = ws;
    ws.onopen = () => {
      connects += 1;
      state.dataset.connects = String(connects);
      state.textContent = "live";
    };
    ws.onmessage = (event) => {
      retry = 500;  // the server answers: the next loss starts the backoff again
      const msg = JSON.parse(event.data);
      const slot = slots[msg.type];
      if (slot && typeof msg.html === "string" && slot.innerHTML.trim() !== msg.html.trim()) {
        slot.innerHTML = msg.html;
      }
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      const final = FINAL[event.code];
      if (final) {
        state.textContent = final;
        return;
      }
      reconnectSoon();
    };
  }
  // Back online (a laptop waking up): try at once instead of waiting out the backoff.
  window.addEventListener("online", () => {
    if (socket && socket.readyState !== WebSocket.OPEN) { retry = 500; socket.close(); connect(); }
  });
  connect();
})();
