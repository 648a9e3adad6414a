// General Settings: live cards (server-rendered partials pushed over a websocket) and the Connect Claude modal.
(() => {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const modal = document.getElementById("claude-login");
  const $ = (sel) => modal.querySelector(sel);
  const show = (el, on) => { el.hidden = !on; };

  // --- live cards ---------------------------------------------------------------------------------------------
  function cardsSocket() {
    const ws = new WebSocket(`${proto}://${location.host}/ws/settings/`);
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type !== "card") return;
      const slot = document.getElementById(`card-${msg.provider}`);
      if (slot) slot.innerHTML = msg.html;
    };
    ws.onclose = () => setTimeout(cardsSocket, 2000);
  }
  cardsSocket();

  // --- the login modal ---------------------------------------------------------------------------------------
  let login = null;
  let method = null;
  const steps = ["choose", "subscription", "paste"];
  function step(name) { steps.forEach((s) => show(modal.querySelector(`[data-step=${s}]`), s === name)); }
  function error(text) { const e = $("[data-testid=login-error]"); e.textContent = text || ""; show(e, !!text); }

  function connectLogin() {
    if (login && login.readyState <= 1) return login;
    login = new WebSocket(`${proto}://${location.host}/ws/settings/claude-login/`);
    login.onmessage = (event) => handle(JSON.parse(event.data));
    return login;
  }
  function send(payload) {
    const ws = connectLogin();
    if (ws.readyState === 1) ws.send(JSON.stringify(payload));
    else ws.addEventListener("open", () => ws.send(JSON.stringify(payload)), { once: true });
  }

  function handle(msg) {
    if (msg.type === "status") {
      if (["starting", "waiting_code", "exchanging"].includes(msg.state)) {
        step("subscription");
        if (!modal.open) modal.showModal();
        show($("[data-cancel-login]"), true);
      }
      if (msg.state === "exchanging") show($("[data-testid=code-form]"), false);
      if (msg.message) {
        $("[data-testid=login-status]").textContent = msg.message;
        $("[data-testid=paste-status]").textContent = msg.message;
      }
      if (["cancelled", "timed_out", "error"].includes(msg.state)) {
        show($("[data-cancel-login]"), false);
        error(msg.message);
      }
    } else if (msg.type === "url") {
      const a = $("[data-testid=login-url]");
      a.href = msg.url;
      show(a, true);
    } else if (msg.type === "need_code") {
      show($("[data-testid=code-form]"), true);
      $("#login-code").focus();
    } else if (msg.type === "output") {
      $("[data-testid=login-output]").textContent = msg.text;
    } else if (msg.type === "saved") {
      error("");
      show($("[data-testid=login-saved]"), true);
      show($("[data-cancel-login]"), false);
      setTimeout(() => modal.close(), 1200);
    } else if (msg.type === "error") {
      error(msg.error);
    }
  }

  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-open-login]")) {
      error("");
      show($("[data-testid=login-saved]"), false);
      step("choose");
      modal.showModal();
      connectLogin();
    }
  });
  modal.querySelectorAll("[data-method]").forEach((button) => button.addEventListener("click", () => {
    method = button.dataset.method;
    error("");
    if (method === "subscription") {
      step("subscription");
      show($("[data-testid=login-url]"), false);
      show($("[data-testid=code-form]"), false);
      $("[data-testid=login-status]").textContent = "Starting the Claude login…";
      send({ type: "start", method });
    } else {
      step("paste");
      $("[data-testid=paste-label]").textContent = method === "api_key" ? "Anthropic API key" : "Claude token";
      $("#login-secret").value = "";
      $("#login-secret").focus();
    }
  }));
  $("[data-testid=code-form]").addEventListener("submit", (event) => {
    event.preventDefault();
    error("");
    send({ type: "code", code: $("#login-code").value });
  });
  $("[data-testid=paste-form]").addEventListener("submit", (event) => {
    event.preventDefault();
    error("");
    send({ type: "start", method, value: $("#login-secret").value });
    $("#login-secret").value = "";
  });
  $("[data-cancel-login]").addEventListener("click", () => send({ type: "cancel" }));
  $("[data-close-login]").addEventListener("click", () => modal.close());
  // A login already running (page refreshed): re-attach and show it.
  if (document.querySelector('[data-testid="claude-card"][data-state="in_progress"]')) connectLogin();
})();
