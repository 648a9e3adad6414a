// General Settings: live cards (server-rendered partials pushed over a websocket) and the Connect Claude modal.
(() => {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const modal = document.getElementById("claude-login");
  const $ = (sel) => modal.querySelector(sel);
  const show = (el, on) => { el.hidden = !on; };

  // --- live cards ---------------------------------------------------------------------------------------------
  // A push carries a card as the server renders it now. It is merged into the card on the page, never swapped in,
  // so a live update never throws away what the user is doing or what the server last told them:
  //  - elements are updated in place (matched by id, data-testid, name or a form's action, else by tag in order):
  //    focus, caret and typed text stay where they are;
  //  - the user's own state is not the server's to reset: whether a <details> or <dialog> is open, the value and
  //    checked state of form controls (hidden inputs excepted), the text of a <textarea>;
  //  - messages that answered the user's last request ([role=alert], e.g. a form's errors) stay until the user
  //    acts again, although a live render, which answers no request, does not carry them.
  const USER_STATE = { DETAILS: ["open"], DIALOG: ["open"], INPUT: ["value", "checked"], OPTION: ["selected"] };
  const userOwned = (el, name) =>
    !(el.nodeName === "INPUT" && el.type === "hidden") && (USER_STATE[el.nodeName] || []).includes(name);
  const keyOf = (node) => node.nodeType !== 1 ? null
    : node.id || node.getAttribute("data-testid") || node.getAttribute("name")
      || (node.nodeName === "FORM" ? node.getAttribute("action") : null) || null;
  const same = (a, b) => a.nodeType === b.nodeType && a.nodeName === b.nodeName && keyOf(a) === keyOf(b);
  const keep = (node) => node.nodeType === 1 && node.matches("[role=alert]");

  function morphAttributes(el, fresh) {
    for (const { name, value } of Array.from(fresh.attributes)) {
      if (!userOwned(el, name) && el.getAttribute(name) !== value) el.setAttribute(name, value);
    }
    for (const { name } of Array.from(el.attributes)) {
      if (!userOwned(el, name) && !fresh.hasAttribute(name)) el.removeAttribute(name);
    }
  }

  function morph(node, fresh) {
    if (node.nodeType !== 1) {
      if (node.nodeValue !== fresh.nodeValue) node.nodeValue = fresh.nodeValue;
      return;
    }
    morphAttributes(node, fresh);
    if (node.nodeName !== "TEXTAREA") morphChildren(node, fresh);
  }

  function dropUntil(node, end) {  // remove the nodes from node up to (not including) end; alerts stay
    while (node && node !== end) {
      const next = node.nextSibling;
      if (!keep(node)) node.remove();
      node = next;
    }
  }

  function morphChildren(parent, freshParent) {
    const freshNodes = Array.from(freshParent.childNodes);
    let cursor = parent.firstChild;
    freshNodes.forEach((fresh, i) => {
      let match = null;
      if (fresh.nodeType !== 1) {
        match = cursor && same(cursor, fresh) ? cursor : null;  // text is matched in place only
      } else {
        // Look ahead for this element, but never past one that a later element will match (it would be dropped).
        const later = freshNodes.slice(i + 1).filter((n) => n.nodeType === 1);
        for (let node = cursor; node; node = node.nextSibling) {
          if (same(node, fresh)) { match = node; break; }
          if (node.nodeType === 1 && later.some((n) => same(node, n))) break;
        }
      }
      if (match) {
        dropUntil(cursor, match);
        morph(match, fresh);
        cursor = match.nextSibling;
      } else {
        parent.insertBefore(fresh, cursor);
      }
    });
    dropUntil(cursor, null);
  }

  function applyCard(slot, html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    morphChildren(slot, template.content);
  }

  function cardsSocket() {
    const ws = new WebSocket(`${proto}://${location.host}/ws/settings/`);
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type !== "card") return;
      const slot = document.getElementById(`card-${msg.provider}`);
      if (slot) applyCard(slot, msg.html);
    };
    ws.onclose = (event) => {
      if (event.code === 4401) {  // signed out (here or in another tab): knocking again cannot help
        const note = document.getElementById("signed-out");
        if (note) note.hidden = false;
        return;
      }
      setTimeout(cardsSocket, 2000);
    };
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
      // What was in progress ("Checking with Anthropic…") is over: the error replaces it.
      $("[data-testid=paste-status]").textContent = "";
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
