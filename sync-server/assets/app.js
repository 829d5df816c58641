// The page of `projsync serve`: projects, branches, a live sync banner, the history with
// restore, and search, all through the JSON API of this server. No framework, no build.
'use strict';

(() => {
  const PHASES = ['prepare', 'scan', 'import', 'finalize'];
  const TOKEN_KEY = 'projsync.token';
  const $ = (id) => document.getElementById(id);
  const api = (path) => new URL('api/v1/' + path, document.baseURI).toString();
  const enc = encodeURIComponent;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** The project shown, and the run being watched. */
  const state = { project: null, watch: null };

  // ---- the API ----------------------------------------------------------------------

  function headers(extra) {
    const h = Object.assign({}, extra);
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  /** The error of a non-2xx answer: the server's own message when it sent one. */
  async function failure(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      // Not JSON: the status says it.
    }
    if (response.status === 401) askToken();
    const error = body && body.error;
    return new Error(error && error.message ? error.message : `the server answered ${response.status}`);
  }

  async function call(method, path, body) {
    const init = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }) };
    if (body !== undefined) init.body = JSON.stringify(body);
    let response;
    try {
      response = await fetch(api(path), init);
    } catch (e) {
      throw new Error('the server cannot be reached (' + e.message + ')');
    }
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  const projectPath = (rest) => `projects/${enc(state.project)}/${rest}`;

  // ---- errors, token, status ----------------------------------------------------------

  function showError(error) {
    $('error').textContent = error.message;
    $('error').hidden = false;
  }

  function clearError() {
    $('error').hidden = true;
    $('error').textContent = '';
  }

  /** Runs an action of the user, showing its error in the banner. */
  async function act(action) {
    clearError();
    try {
      await action();
    } catch (e) {
      showError(e);
    }
  }

  function askToken() {
    const form = $('token-form');
    if (form.hidden) {
      form.hidden = false;
      $('token').focus();
    }
  }

  function setStatus(text) {
    $('status').textContent = text;
  }

  function option(value, text) {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = text;
    return o;
  }

  function cell(row, content, className) {
    const td = row.insertCell();
    if (content instanceof Node) td.append(content);
    else td.textContent = content;
    if (className) td.className = className;
    return td;
  }

  // ---- projects, branches, history --------------------------------------------------

  async function loadProjects() {
    const { projects } = await call('GET', 'projects');
    $('token-form').hidden = true;
    const select = $('project');
    const wanted = state.project || sessionStorage.getItem('projsync.project');
    select.replaceChildren(...projects.map((p) => option(p.name, p.name)));
    if (!projects.length) {
      setStatus('This server has no project for this token.');
      return;
    }
    if (projects.some((p) => p.name === wanted)) select.value = wanted;
    await showProject(projects.find((p) => p.name === select.value));
  }

  async function showProject(project) {
    stopWatching();
    state.project = project.name;
    sessionStorage.setItem('projsync.project', project.name);
    $('project').title = project.repo;
    resetBanner('');
    setStatus('No sync is running.');
    $('results').replaceChildren();
    $('search-status').textContent = '';
    const [{ branches }] = await Promise.all([call('GET', projectPath('branches')), loadHistory(true)]);
    const select = $('branch');
    select.replaceChildren(...branches.map((b) => option(b.name, b.name + (b.default ? ' (default)' : ''))));
    const chosen = branches.find((b) => b.name === project.default_branch) || branches.find((b) => b.default);
    if (chosen) select.value = chosen.name;
  }

  function changes(stats) {
    const parts = [['added', stats.added], ['changed', stats.modified], ['removed', stats.deleted], ['renamed', stats.renamed]]
      .filter(([, n]) => n > 0)
      .map(([what, n]) => `${n} ${what}`);
    return parts.length ? parts.join(', ') : 'no changes';
  }

  /** Fills the history; with `attach`, follows the project's running sync, if any. */
  async function loadHistory(attach) {
    const { syncs, running } = await call('GET', projectPath('syncs?limit=20'));
    const body = $('history');
    body.replaceChildren();
    for (const run of syncs) {
      const row = body.insertRow();
      row.dataset.testid = 'history-row';
      row.dataset.id = run.id;
      row.dataset.status = run.status;
      if (run.restored_from != null) row.dataset.restoredFrom = run.restored_from;
      cell(row, '#' + run.id);
      cell(row, run.status + (run.restored_from != null ? ` (restore of #${run.restored_from})` : ''), 'state-' + run.status);
      cell(row, run.branch);
      const commit = document.createElement('code');
      commit.textContent = run.commit.slice(0, 7);
      commit.title = run.commit;
      cell(row, commit);
      cell(row, new Date(run.started_at).toLocaleString());
      cell(row, run.status === 'completed' ? changes(run.stats) : run.error || '');
      const actions = cell(row, '');
      if (run.status === 'completed') {
        const button = document.createElement('button');
        button.type = 'button';
        button.textContent = 'Restore';
        button.dataset.testid = 'restore';
        button.setAttribute('aria-label', `Restore the memory of run ${run.id}`);
        button.addEventListener('click', () => act(() => restore(run.id)));
        actions.append(button);
      }
    }
    $('history-empty').hidden = syncs.length > 0;
    $('history-table').hidden = syncs.length === 0;
    if (attach && running && !(state.watch && state.watch.id === running.id)) watch(running.id, running.events, running.job);
  }

  async function restore(id) {
    const answer = await call('POST', projectPath(`syncs/${id}/restore`));
    setStatus(`Run ${answer.id} restored the memory of run ${id}.`);
    await loadHistory(false);
  }

  async function syncNow() {
    const branch = $('branch').value;
    const started = await call('POST', projectPath('syncs'), branch ? { branch } : {});
    // A server with a job queue answers with the job (`job`), whose events name its run.
    watch(started.id, started.events, started.job);
  }

  // ---- the live banner ------------------------------------------------------------------

  const stats = {};

  function renderStats() {
    const show = (name, text) => {
      document.querySelector(`#stats [data-stat="${name}"]`).textContent = text;
    };
    show('files', stats.filesTotal == null ? '–' : `${stats.filesDone || 0} / ${stats.filesTotal}`);
    for (const name of ['added', 'changed', 'removed', 'renamed', 'embedded']) {
      show(name, stats[name] == null ? '–' : String(stats[name]));
    }
    show('elapsed', stats.elapsed == null ? '–' : formatSeconds(stats.elapsed));
  }

  function formatSeconds(ms) {
    const s = Math.max(0, ms) / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
    return `${Math.floor(s / 60)} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  }

  function resetBanner(run) {
    for (const key of Object.keys(stats)) delete stats[key];
    renderStats();
    for (const phase of PHASES) setPhaseState(phase, 'pending');
    const progress = $('progress');
    progress.max = 1;
    progress.value = 0;
    $('banner').dataset.status = run === '' ? 'idle' : 'running';
    $('banner').dataset.run = run;
  }

  function setPhaseState(phase, value) {
    document.querySelector(`[data-testid="phase-${phase}"]`).dataset.state = value;
  }

  function enterPhase(phase) {
    const at = PHASES.indexOf(phase);
    PHASES.forEach((p, i) => setPhaseState(p, i < at ? 'done' : i === at ? 'active' : 'pending'));
  }

  function tick() {
    if (stats.startedAt != null) {
      stats.elapsed = Date.now() - stats.startedAt;
      renderStats();
    }
  }

  function handle(w, name, data) {
    const progress = $('progress');
    switch (name) {
      case 'started':
        stats.startedAt = Date.parse(data.at);
        setStatus(`${w.label}: syncing ${data.branch || 'the default branch'}…`);
        break;
      case 'phase':
        enterPhase(data.phase);
        break;
      case 'prepared':
        setStatus(`Run ${data.sync_id}: syncing ${data.branch} at ${data.commit.slice(0, 7)}…`);
        break;
      case 'scanned':
        Object.assign(stats, {
          added: data.counts.added,
          changed: data.counts.modified,
          removed: data.counts.deleted,
          renamed: data.counts.renamed,
          filesDone: 0,
          filesTotal: data.to_fetch,
        });
        break;
      case 'progress':
        stats.filesDone = data.files_done;
        stats.filesTotal = data.files_total;
        stats.embedded = data.texts_embedded;
        progress.max = Math.max(1, data.files_total);
        progress.value = data.files_total > 0 ? data.files_done : 0;
        break;
      case 'source':
        setStatus(data.notice === 'rate_limited'
          ? `The source is rate limited until ${new Date(data.until).toLocaleTimeString()}; waiting.`
          : `The source failed (${data.reason}); trying again.`);
        break;
      case 'completed': {
        const record = data.record;
        Object.assign(stats, {
          added: record.stats.added,
          changed: record.stats.modified,
          removed: record.stats.deleted,
          renamed: record.stats.renamed,
          embedded: record.stats.embeddings_computed,
        });
        if (stats.filesTotal == null) stats.filesTotal = 0;
        stats.filesDone = stats.filesTotal;
        progress.value = progress.max;
        ended(w, 'completed', `Run ${record.id} completed: ${changes(record.stats)}.`, record);
        break;
      }
      case 'failed':
        ended(w, 'failed', `${data.sync_id != null ? 'Run ' + data.sync_id : w.label} failed; the memory is as it was.`);
        showError(new Error(data.error.message));
        break;
      case 'cancelled':
        ended(w, 'cancelled', `${data.sync_id != null ? 'Run ' + data.sync_id : w.label} was cancelled; the memory is as it was.`);
        break;
      default:
        break;
    }
    if (!w.ended && stats.startedAt != null) stats.elapsed = Date.now() - stats.startedAt;
    renderStats();
  }

  /** A run's terminal event: every phase it reached is done; the history shows it. */
  function ended(w, status, text, record) {
    w.ended = true;
    clearInterval(w.timer);
    if (record && record.finished_at) stats.elapsed = Date.parse(record.finished_at) - Date.parse(record.started_at);
    else tick();
    for (const phase of PHASES) {
      const dot = document.querySelector(`[data-testid="phase-${phase}"]`);
      if (status === 'completed' || dot.dataset.state === 'active') dot.dataset.state = 'done';
    }
    $('banner').dataset.status = status;
    setStatus(text);
    loadHistory(false).catch(showError);
  }

  // ---- the event stream: fetch and a reader, so the token never goes into a URL -------

  /** Follows the events at `url` of run `id`, or of job `job` (then `id` is the job's). */
  function watch(id, url, job) {
    stopWatching();
    const label = job != null ? `Job ${job}` : `Run ${id}`;
    const w = { id, url, label, last: 0, ended: false, controller: new AbortController() };
    w.timer = setInterval(tick, 1000);
    state.watch = w;
    resetBanner(String(id));
    setStatus(`${label}: starting…`);
    follow(w).catch(showError);
  }

  function stopWatching() {
    const w = state.watch;
    if (w) {
      w.controller.abort();
      clearInterval(w.timer);
    }
    state.watch = null;
  }

  /** Reads the run's events until its terminal one, reconnecting with `Last-Event-ID`. */
  async function follow(w) {
    let failures = 0;
    while (!w.ended && !w.controller.signal.aborted) {
      const h = headers({ Accept: 'text/event-stream' });
      if (w.last) h['Last-Event-ID'] = String(w.last);
      let response = null;
      try {
        response = await fetch(new URL(w.url, document.baseURI), { headers: h, signal: w.controller.signal, cache: 'no-store' });
      } catch (_) {
        failures += 1;
      }
      if (w.controller.signal.aborted) return;
      if (response && !response.ok) {
        // The run is not (or no longer) known here: say why, and show its outcome.
        w.ended = true;
        clearInterval(w.timer);
        $('banner').dataset.status = 'unknown';
        showError(await failure(response));
        await loadHistory(false);
        return;
      }
      if (response) {
        failures = 0;
        try {
          await read(w, response.body);
        } catch (_) {
          if (w.controller.signal.aborted) return;
          failures += 1;
        }
      }
      if (!w.ended) await sleep(Math.min(500 * 2 ** failures, 8000));
    }
  }

  async function read(w, body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer = (buffer + value).replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parse(frame);
        if (!event || w.controller.signal.aborted) continue;
        if (event.id) w.last = event.id;
        handle(w, event.name, event.data);
      }
    }
  }

  /** One Server-Sent Events frame; `null` for a comment (keep-alive). */
  function parse(frame) {
    let id = 0;
    let name = 'message';
    const data = [];
    for (const line of frame.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id') id = Number(value);
      else if (field === 'event') name = value;
      else if (field === 'data') data.push(value);
    }
    if (!data.length) return null;
    try {
      return { id, name, data: JSON.parse(data.join('\n')) };
    } catch (_) {
      return null;
    }
  }

  // ---- search ---------------------------------------------------------------------------

  async function search() {
    const q = $('q').value.trim();
    if (!q) return;
    const params = new URLSearchParams({ q, k: '10' });
    const { hits } = await call('GET', projectPath('search?' + params));
    const list = $('results');
    list.replaceChildren(...hits.map((hit) => {
      const li = document.createElement('li');
      li.dataset.testid = 'search-result';
      const head = document.createElement('div');
      head.className = 'hit-head';
      const path = document.createElement('code');
      path.className = 'path';
      path.textContent = hit.path;
      const lines = document.createElement('span');
      lines.className = 'lines';
      lines.textContent = hit.start_line === hit.end_line ? `line ${hit.start_line}` : `lines ${hit.start_line}–${hit.end_line}`;
      head.append(path, lines);
      if (hit.symbol) {
        const symbol = document.createElement('span');
        symbol.className = 'symbol';
        symbol.textContent = hit.symbol;
        head.append(symbol);
      }
      const snippet = document.createElement('pre');
      snippet.textContent = hit.snippet;
      li.append(head, snippet);
      return li;
    }));
    $('search-status').textContent = hits.length ? `${hits.length} result${hits.length === 1 ? '' : 's'}` : `Nothing matches “${q}”.`;
  }

  // ---- wiring -----------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
      act(loadProjects);
    });
    $('project').addEventListener('change', () => {
      state.project = $('project').value;
      act(loadProjects);
    });
    $('sync-now').addEventListener('click', () => act(syncNow));
    $('search-form').addEventListener('submit', (e) => {
      e.preventDefault();
      act(search);
    });
    act(loadProjects);
  });
})();
