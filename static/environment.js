// The environment page: observe mode's proposed setup policy, live. The server pushes the proposal card as it
// renders it now (a new observed setup, or the policy changed); only that card is replaced. It holds no field the
// user types in, and the environment form is never touched, so a live update throws away nothing typed.
(() => {
  const slot = document.getElementById("proposal-slot");
  if (!slot) return;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  function connect() {
    const ws = new WebSocket(`${proto}://${location.host}${slot.dataset.liveUrl}`);
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "proposal" && slot.innerHTML.trim() !== msg.html.trim()) slot.innerHTML = msg.html;
    };
    ws.onclose = (event) => {
      if (event.code !== 4401 && event.code !== 4403) setTimeout(connect, 2000);
    };
  }
  connect();
})();
