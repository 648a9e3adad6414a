// The task form's repository picker: the user's GitHub repositories (from /tasks/repositories/), filtered as they
// type, chosen with the keyboard or the mouse; picking one fills the Repository URL field (and the base branch, unless
// the user typed one). Without this script the URL field works as it always did. Nothing here changes what the user
// typed except the fields a pick fills; an answer that arrives late never overwrites a newer one. Every text from
// GitHub goes in with textContent, never as HTML.
(() => {
  const picker = document.querySelector("[data-testid=repo-picker]");
  if (!picker) return;
  const form = picker.closest("form");
  const search = picker.querySelector("#repo-search");
  const list = picker.querySelector("#repo-options");
  const status = picker.querySelector("[data-testid=repo-status]");
  const errorBox = picker.querySelector("[data-testid=repo-error]");
  const reload = picker.querySelector("[data-testid=repo-reload]");
  const urlField = form.querySelector("#id_repo_url");
  const branchField = form.querySelector("#id_base_branch");
  const SHOWN = 50;  // options rendered at once; typing narrows the rest

  let repositories = [];  // the listed ones, in the server's order (used first, then last push)
  let found = [];  // what the search API added for the current text
  let truncated = false;
  let active = -1;
  const latest = { list: 0, search: 0 };  // the newest request of each kind; older answers are dropped
  let searchTimer = null;
  let branchPicked = branchField ? branchField.value : null;  // the base branch value a pick (or the page) set

  picker.hidden = false;

  function showError(message, settingsUrl) {
    errorBox.textContent = message || "";
    if (message && settingsUrl) {
      errorBox.append(" ");
      const link = document.createElement("a");
      link.href = settingsUrl;
      link.textContent = "Open Settings";
      link.dataset.testid = "repo-settings-link";
      errorBox.append(link);
    }
    errorBox.hidden = !message;
  }

  function matches() {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const seen = new Set();
    return repositories.concat(found).filter((repo) => {
      const name = repo.full_name.toLowerCase();
      if (seen.has(name) || !words.every((w) => name.includes(w))) return false;
      seen.add(name);
      return true;
    });
  }

  function option(repo, index) {
    const li = document.createElement("li");
    li.id = `repo-option-${index}`;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", index === active ? "true" : "false");
    li.dataset.testid = "repo-option";
    li.dataset.url = repo.url;
    const name = document.createElement("span");
    name.className = "repo-name";
    name.textContent = repo.full_name;
    const visibility = document.createElement("span");
    visibility.className = `badge ${repo.private ? "badge-warn" : "badge-muted"}`;
    visibility.textContent = repo.private ? "private" : "public";
    const meta = document.createElement("span");
    meta.className = "repo-meta";
    meta.textContent = `default branch ${repo.default_branch}` + (repo.pushed ? ` · last push ${repo.pushed}` : "")
      + (repo.used ? " · used before" : "");
    li.append(name, " ", visibility, " ", meta);
    li.addEventListener("mousedown", (event) => event.preventDefault());  // keep focus in the search box
    li.addEventListener("click", () => pick(repo));
    return li;
  }

  function render() {
    const shown = matches();
    if (active >= Math.min(shown.length, SHOWN)) active = Math.min(shown.length, SHOWN) - 1;
    list.replaceChildren(...shown.slice(0, SHOWN).map(option));
    list.hidden = shown.length === 0;
    search.setAttribute("aria-expanded", list.hidden ? "false" : "true");
    if (active >= 0) {
      search.setAttribute("aria-activedescendant", `repo-option-${active}`);
      list.children[active].scrollIntoView({ block: "nearest" });
    } else {
      search.removeAttribute("aria-activedescendant");
    }
    return shown;
  }

  function describe(shown) {
    if (!repositories.length && !found.length) return "No repositories listed yet: type the URL below.";
    const typed = search.value.trim();
    if (typed && !shown.length) return `No repository matches “${typed}”. You can still type its URL below.`;
    const more = shown.length > SHOWN ? ` (the first ${SHOWN} of ${shown.length} shown; type to narrow)` : "";
    if (truncated) {
      return `Showing the first ${repositories.length} repositories${more}; type to search GitHub for the others.`;
    }
    return `${shown.length} of your repositories${typed ? " match" : ""}${more}. Or type the URL below.`;
  }

  function update() { status.textContent = describe(render()); }

  function pick(repo) {
    urlField.value = repo.url;
    if (branchField && branchField.value === branchPicked) {
      branchField.value = repo.default_branch;
      branchPicked = repo.default_branch;
    }
    search.value = repo.full_name;
    active = -1;
    found = [];
    render();
    list.hidden = true;
    search.setAttribute("aria-expanded", "false");
    status.textContent = `Picked ${repo.full_name} (default branch ${repo.default_branch}).`;
  }

  async function ask(kind, url, options) {
    const mine = ++latest[kind];
    let body = null;
    let problem = "";
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, ...options });
      if (response.redirected || (response.headers.get("content-type") || "").indexOf("json") < 0) {
        problem = "You were signed out: sign in again to list your repositories.";
      } else if (!response.ok) {
        problem = `Anyon could not list your repositories (HTTP ${response.status}). You can still type the URL.`;
      } else {
        body = await response.json();
      }
    } catch (err) {
      problem = "Anyon could not be reached to list your repositories. You can still type the URL.";
    }
    if (mine !== latest[kind]) return null;  // a newer request of this kind answers instead
    if (problem) {
      showError(problem);
      status.textContent = "";
      return null;
    }
    showError(body.message, body.settings_url);
    return body;
  }

  async function load(refresh) {
    status.textContent = refresh ? "Reloading your repositories from GitHub…" : "Loading your repositories…";
    reload.disabled = true;
    const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
    const body = await ask("list", picker.dataset.endpoint,
      refresh ? { method: "POST", headers: { Accept: "application/json", "X-CSRFToken": csrf } } : {});
    reload.disabled = false;
    if (!body) return;
    if (body.error) { status.textContent = ""; return; }
    repositories = body.repositories;
    truncated = body.truncated;
    update();
  }

  async function searchGitHub(text) {
    const body = await ask("search", `${picker.dataset.endpoint}?q=${encodeURIComponent(text)}`);
    if (!body || body.error || search.value.trim() !== text) return;
    found = body.repositories;
    update();
  }

  search.addEventListener("input", () => {
    active = -1;
    found = [];
    update();
    clearTimeout(searchTimer);
    const text = search.value.trim();
    if (truncated && text.length >= 2) searchTimer = setTimeout(() => searchGitHub(text), 300);
  });
  search.addEventListener("focus", () => { if (repositories.length || found.length) update(); });
  search.addEventListener("keydown", (event) => {
    const count = Math.min(matches().length, SHOWN);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!count) return;
      active = event.key === "ArrowDown" ? (active + 1) % count : (active <= 0 ? count - 1 : active - 1);
      render();
    } else if (event.key === "Enter") {
      event.preventDefault();  // Enter in the search box picks; it never submits the form half filled
      const shown = matches();
      if (active >= 0 && active < shown.length) pick(shown[active]);
      else if (shown.length === 1) pick(shown[0]);
    } else if (event.key === "Escape" && !list.hidden) {
      event.preventDefault();
      active = -1;
      list.hidden = true;
      search.setAttribute("aria-expanded", "false");
    }
  });
  reload.addEventListener("click", () => load(true));
  load(false);
})();
