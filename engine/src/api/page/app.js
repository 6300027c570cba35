// The mediaflow page: uploads with progress, the job list, and a job's renditions and video.
// It uses the job API (/v1/openapi.json) as any client does. An API key, when the server
// needs one, lives in localStorage and travels in the Authorization header only; event
// streams and files use the short-lived tokens the API puts in their URLs.
'use strict';

const KEY_STORE = 'mediaflow.apiKey';
const TERMINAL = new Set(['succeeded', 'failed', 'canceled', 'expired']);
const PAGE_SIZE = 20;
// Content types by extension, for files the browser gives no type (HEIC, JPEG XL, MKV…).
const TYPES = {
  jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', gif: 'image/gif',
  avif: 'image/avif', heic: 'image/heic', heif: 'image/heif', jxl: 'image/jxl', tif: 'image/tiff',
  tiff: 'image/tiff', bmp: 'image/bmp', svg: 'image/svg+xml', mp4: 'video/mp4', m4v: 'video/mp4',
  mov: 'video/quicktime', webm: 'video/webm', mkv: 'video/x-matroska', avi: 'video/x-msvideo',
  ts: 'video/mp2t', mts: 'video/mp2t',
};

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
};

// ---- The API ----

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function apiKey() {
  try { return localStorage.getItem(KEY_STORE) || ''; } catch { return ''; }
}

async function api(method, path, body) {
  const headers = {};
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'network', `The server cannot be reached (${e.message}).`);
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!response.ok) {
    const err = (json && json.error) || {};
    const e = new ApiError(response.status, err.code || 'http', err.message || `${response.status} ${response.statusText}`);
    if (response.status === 401 || response.status === 403) askForKey(e.message);
    throw e;
  }
  return json;
}

// ---- The API key ----

function askForKey(reason) {
  $('key-reason').textContent = reason || 'This server needs an API key. It is kept in this browser only.';
  if (!$('key-prompt').hidden) return; // already open: leave the focus where the person put it
  $('key-prompt').hidden = false;
  $('key-input').focus();
}

function setUpKey() {
  $('key-button').addEventListener('click', () => askForKey());
  $('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    try { localStorage.setItem(KEY_STORE, $('key-input').value.trim()); } catch { /* private mode */ }
    $('key-input').value = '';
    $('key-prompt').hidden = true;
    route();
  });
  $('key-forget').addEventListener('click', () => {
    try { localStorage.removeItem(KEY_STORE); } catch { /* private mode */ }
    $('key-input').value = '';
  });
}

// ---- Formatting ----

function bytes(n) {
  if (n == null) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function sourceName(job) {
  const s = (job.sources && job.sources[0]) || '';
  const last = s.split('/').pop() || job.id;
  try { return decodeURIComponent(last); } catch { return last; }
}

function statusBadge(status) {
  return el('span', { className: `status status-${status}`, textContent: status.replace('_', ' ') });
}

function progressText(job) {
  if (job.status === 'running') {
    return `${job.progress.stage || 'running'} ${Math.round(job.progress.percent || 0)} %`;
  }
  return job.status === 'succeeded' ? '100 %' : '';
}

// ---- Uploads ----

function contentType(file) {
  if (file.type) return file.type;
  const ext = (file.name.split('.').pop() || '').toLowerCase();
  return TYPES[ext] || 'application/octet-stream';
}

/// PUT `blob` to `url` with `headers`, reporting bytes sent; resolves to the ETag header.
function put(url, headers, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    for (const [k, v] of Object.entries(headers || {})) {
      // The browser sets these itself and refuses to be told.
      if (!['content-length', 'host'].includes(k.toLowerCase())) xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(blob.size);
        resolve(xhr.getResponseHeader('ETag'));
        return;
      }
      let message = `upload answered ${xhr.status}`;
      try { message = JSON.parse(xhr.responseText).error.message || message; } catch { /* S3's XML */ }
      reject(new Error(message));
    };
    xhr.onerror = () => reject(new Error('the upload was interrupted (network error)'));
    xhr.send(blob);
  });
}

class UploadItem {
  constructor(file) {
    this.file = file;
    this.bar = el('progress', { max: file.size || 1, value: 0, dataset: { role: 'upload' } });
    this.bar.setAttribute('aria-label', `Upload of ${file.name}`);
    this.pct = el('span', { className: 'pct', textContent: '0 %' });
    this.status = el('span', { className: 'status', textContent: 'uploading', dataset: { role: 'status' } });
    this.jobBar = el('progress', { max: 100, value: 0, hidden: true, dataset: { role: 'job' } });
    this.jobBar.setAttribute('aria-label', `Job of ${file.name}`);
    this.stage = el('span', { className: 'muted', dataset: { role: 'stage' } });
    this.link = el('a', { hidden: true, textContent: 'View' });
    this.error = el('p', { className: 'error', hidden: true, dataset: { role: 'error' } });
    this.li = el('li', { className: 'upload', dataset: { name: file.name } },
      el('span', { className: 'name', textContent: file.name }), ' ',
      el('span', { className: 'muted', textContent: bytes(file.size) }), ' ',
      this.bar, ' ', this.pct, ' ', this.status, ' ', this.jobBar, ' ', this.stage, ' ', this.link,
      this.error);
    $('uploads').prepend(this.li);
  }

  sent(n) {
    this.bar.value = n;
    const p = this.file.size ? Math.floor((n * 100) / this.file.size) : 100;
    this.pct.textContent = `${p} %`;
    this.li.dataset.uploaded = String(p);
  }

  job(job) {
    this.li.dataset.job = job.id;
    this.link.href = `#/jobs/${job.id}`;
    this.link.hidden = false;
    this.status.replaceChildren(statusBadge(job.status));
    this.li.dataset.status = job.status;
    this.jobBar.hidden = false;
    this.jobBar.value = job.status === 'succeeded' ? 100 : job.progress.percent || 0;
    this.stage.textContent = job.status === 'running' ? job.progress.stage || '' : '';
    if (job.error) this.fail(job.error.message);
  }

  fail(message) {
    this.error.textContent = message;
    this.error.hidden = false;
    if (!this.li.dataset.status) {
      this.status.textContent = 'upload failed';
      this.li.dataset.status = 'upload_failed';
    }
  }
}

async function upload(file) {
  const item = new UploadItem(file);
  try {
    const target = await api('POST', '/v1/uploads', {
      filename: file.name, content_type: contentType(file), bytes: file.size,
    });
    if (target.job) item.job(target.job);
    if (target.method === 'multipart') {
      const done = new Array(target.parts.length).fill(0);
      const sent = [];
      for (const part of target.parts) {
        const start = (part.number - 1) * target.part_bytes;
        const etag = await put(part.url, target.headers, file.slice(start, start + part.bytes), (n) => {
          done[part.number - 1] = n;
          item.sent(done.reduce((a, b) => a + b, 0));
        });
        sent.push({ number: part.number, etag });
      }
      await fetch(target.complete_url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ parts: sent }),
      }).then(async (r) => {
        if (!r.ok) throw new Error(((await r.json().catch(() => ({}))).error || {}).message || `completing the upload answered ${r.status}`);
      });
    } else {
      await put(target.url, target.headers, file, (n) => item.sent(n));
    }
    item.status.textContent = 'uploaded';
    follow(target.job, (job) => { item.job(job); refreshList(); });
  } catch (e) {
    item.fail(e.message);
  }
}

function setUpUploads() {
  const drop = $('drop');
  $('file-input').addEventListener('change', (ev) => {
    for (const f of ev.target.files) upload(f);
    ev.target.value = '';
  });
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    for (const f of ev.dataTransfer.files) upload(f);
  });
}

// ---- Following a job ----

/// Call `onJob` with each new state of `job` until it ends, from its event stream.
function follow(job, onJob) {
  if (!job || TERMINAL.has(job.status)) return () => {};
  const source = new EventSource(job.events_url);
  const handle = (ev) => {
    let next;
    try { next = JSON.parse(ev.data); } catch { return; }
    onJob(next);
    if (TERMINAL.has(next.status)) source.close();
  };
  source.addEventListener('status', handle);
  source.addEventListener('progress', handle);
  // The stream ends after a terminal status; the browser would reconnect: don't.
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) return;
    api('GET', `/v1/jobs/${job.id}`).then((j) => {
      if (TERMINAL.has(j.status)) { source.close(); onJob(j); }
    }).catch(() => {});
  };
  return () => source.close();
}

// ---- The job list ----

let cursor = null;
let listTimer = null;

async function loadJobs(append) {
  const status = $('status-filter').value;
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (status) q.set('status', status);
  if (append && cursor) q.set('cursor', cursor);
  const page = await api('GET', `/v1/jobs?${q}`);
  const body = $('jobs').tBodies[0];
  const rows = page.jobs.map((job) => el('tr', { dataset: { job: job.id, status: job.status } },
    el('td', {}, el('a', { href: `#/jobs/${job.id}`, textContent: sourceName(job) })),
    el('td', {}, statusBadge(job.status)),
    el('td', { textContent: progressText(job) }),
    el('td', {}, el('time', { dateTime: job.created_at, textContent: new Date(job.created_at).toLocaleString() }))));
  if (append) body.append(...rows);
  else body.replaceChildren(...rows);
  cursor = page.next_cursor;
  $('more').hidden = !cursor;
  $('jobs-empty').hidden = body.rows.length > 0;
}

function refreshList() {
  if ($('list-view').hidden) return;
  loadJobs(false).catch((e) => showListError(e));
}

function showListError(e) {
  $('jobs-empty').hidden = false;
  $('jobs-empty').textContent = e.status === 401 || e.status === 403 ? 'An API key is needed to list jobs.' : e.message;
}

function setUpList() {
  $('status-filter').addEventListener('change', () => {
    try { sessionStorage.setItem('mediaflow.filter', $('status-filter').value); } catch { /* private mode */ }
    refreshList();
  });
  try { $('status-filter').value = sessionStorage.getItem('mediaflow.filter') || ''; } catch { /* private mode */ }
  $('more').addEventListener('click', () => loadJobs(true).catch(showListError));
}

// ---- A job ----

let stopFollowing = () => {};
let hls = null;
let shownVideo = null;

function outputsOf(job, kind) {
  return job.outputs.filter((o) => o.kind === kind);
}

function renderJob(job) {
  $('job-title').textContent = sourceName(job);
  $('job-status').replaceChildren(statusBadge(job.status));
  $('job-view').dataset.status = job.status;
  $('job-view').dataset.job = job.id;
  $('job-progress').value = job.status === 'succeeded' ? 100 : job.progress.percent || 0;
  $('job-stage').textContent = job.status === 'running' ? `${job.progress.stage || ''} ${Math.round(job.progress.percent || 0)} %` : '';
  const cancellable = (job.status === 'queued' || job.status === 'running' || job.status === 'awaiting_upload');
  $('cancel').hidden = !cancellable;
  $('cancel').disabled = job.cancel_requested;
  $('cancel').textContent = job.cancel_requested ? 'Cancelling…' : 'Cancel job';
  const error = $('job-error');
  error.hidden = !job.error;
  if (job.error) {
    error.replaceChildren(el('strong', { textContent: 'This job failed: ' }), job.error.message,
      el('span', { className: 'muted', textContent: ` (${job.error.code})` }));
  }
  if (job.status !== 'succeeded') return;
  renderImages(job);
  renderVideo(job);
  renderDownloads(job);
  renderMetadata(job.metadata);
  if (job.manifest_url) {
    fetch(job.manifest_url).then((r) => (r.ok ? r.json() : null)).then((m) => m && renderPlugins(m)).catch(() => {});
  }
}

function renderImages(job) {
  const images = outputsOf(job, 'image');
  $('job-images').hidden = images.length === 0;
  $('images').replaceChildren(...images.map((o) => el('figure', {},
    el('img', { src: o.url, alt: `${o.name} rendition`, loading: 'lazy', width: o.width, height: o.height, dataset: { name: o.name } }),
    el('figcaption', { textContent: `${o.name} · ${o.format} · ${o.width}×${o.height} · ${bytes(o.bytes)}` }))));
}

// A codec string's name for people.
function codecName(codec) {
  if (!codec) return '';
  if (codec.startsWith('av01')) return 'AV1';
  if (codec.startsWith('avc')) return 'H.264';
  if (codec.startsWith('hvc') || codec.startsWith('hev')) return 'HEVC';
  return codec;
}

function renderVideo(job) {
  const master = job.outputs.find((o) => o.kind === 'playlist' && o.name === 'hls');
  const probe = document.createElement('video');
  // The largest MP4 this browser can play (an AV1 rung only where it decodes AV1).
  const mp4 = outputsOf(job, 'video').filter((o) => o.format === 'mp4' && !o.name.startsWith('hls/'))
    .filter((o) => !o.codec || probe.canPlayType(`video/mp4; codecs="${o.codec}"`) !== '')
    .sort((a, b) => b.height - a.height || (codecName(b.codec) === 'AV1') - (codecName(a.codec) === 'AV1'))[0];
  const poster = outputsOf(job, 'poster')[0];
  $('job-video').hidden = !master && !mp4;
  if (!master && !mp4) return;
  if (shownVideo === job.id) return;
  shownVideo = job.id;
  const video = $('player');
  if (poster) video.poster = poster.url;
  const forced = new URLSearchParams(location.search).get('player');
  if (master && window.Hls && Hls.isSupported() && forced !== 'native') {
    // hls.js (Media Source Extensions): the player where the browser has no HLS of its own,
    // and where it has both (its adaptive switching is the better one).
    hls = new Hls({ capLevelToPlayerSize: true });
    hls.loadSource(master.url);
    hls.attachMedia(video);
    const kind = `HLS (hls.js ${Hls.version})`;
    $('player-kind').textContent = kind;
    // hls.js keeps the variants this browser can decode and prefers AV1 among them: say which
    // codec plays.
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      video.dataset.codecs = [...new Set(hls.levels.map((l) => codecName(l.videoCodec)))].join(' ');
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {
      const level = hls.levels[data.level];
      if (!level) return;
      video.dataset.codec = codecName(level.videoCodec);
      $('player-kind').textContent = `${kind} · ${video.dataset.codec} ${level.height}p`;
    });
  } else if (master && video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = master.url;
    $('player-kind').textContent = 'HLS (the browser’s own player)';
  } else if (mp4) {
    video.src = mp4.url;
    video.dataset.codec = codecName(mp4.codec);
    $('player-kind').textContent = `MP4 ${mp4.name}${mp4.codec ? ` · ${codecName(mp4.codec)}` : ''}`;
  }
  video.dataset.player = $('player-kind').textContent;
  const vtt = job.outputs.find((o) => o.kind === 'vtt');
  if (vtt) renderScenes(vtt.url, video);
}

/// The seek thumbnails: the WebVTT file's cues, each a tile of the sprite (`#xywh=`).
async function renderScenes(url, video) {
  const text = await fetch(url).then((r) => (r.ok ? r.text() : ''));
  const cues = [];
  const blocks = text.split(/\r?\n\r?\n/);
  for (const b of blocks) {
    const m = b.match(/(\d+):(\d+):(\d+(?:\.\d+)?)\s*-->\s*[\d:.]+\s*\r?\n(\S+)/);
    if (!m) continue;
    const at = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
    const [file, frag] = m[4].split('#xywh=');
    if (!frag) continue;
    const [x, y, w, h] = frag.split(',').map(Number);
    cues.push({ at, src: new URL(file, url).href, x, y, w, h });
  }
  $('scenes').replaceChildren(...cues.map((c) => {
    const b = el('button', { type: 'button', className: 'scene', title: `Seek to ${c.at.toFixed(1)} s` });
    b.setAttribute('aria-label', `Seek to ${c.at.toFixed(1)} seconds`);
    b.style.width = `${c.w}px`;
    b.style.height = `${c.h}px`;
    b.style.backgroundImage = `url("${c.src}")`;
    b.style.backgroundPosition = `-${c.x}px -${c.y}px`;
    b.addEventListener('click', () => { video.currentTime = c.at; video.play().catch(() => {}); });
    return b;
  }));
}

function renderDownloads(job) {
  // Every output a person would want; HLS segments and stream playlists stay out of the list.
  const shown = job.outputs.filter((o) => o.format !== 'm4s' && !(o.kind === 'playlist' && o.name !== 'hls') && !o.name.startsWith('hls/'));
  const items = shown.map((o) => el('li', {}, el('a', { href: o.url, download: '', textContent: o.name }),
    ` ${o.format}${o.codec && o.kind === 'video' ? ` · ${codecName(o.codec)}` : ''}${o.width ? ` · ${o.width}×${o.height}` : ''} · ${bytes(o.bytes)}`));
  if (job.manifest_url) items.push(el('li', {}, el('a', { href: job.manifest_url, download: 'manifest.json', textContent: 'manifest.json' })));
  $('downloads').replaceChildren(...items);
  $('job-downloads').hidden = items.length === 0;
}

function renderMetadata(metadata) {
  const plugins = Object.entries(metadata || {}).filter(([, f]) => f && Object.keys(f).length > 0);
  $('job-metadata').hidden = plugins.length === 0;
  $('metadata').replaceChildren(...plugins.map(([plugin, fields]) => {
    const dl = el('dl');
    for (const [k, v] of Object.entries(fields || {})) {
      dl.append(el('dt', { textContent: k }), el('dd', { textContent: typeof v === 'string' ? v : JSON.stringify(v) }));
    }
    return el('div', { className: 'plugin-meta', dataset: { plugin } }, el('h4', { textContent: plugin }), dl);
  }));
}

function renderPlugins(manifest) {
  const rows = (manifest.plugins || []).map((p) => el('tr', {},
    el('td', { textContent: p.name }), el('td', { textContent: p.version }),
    el('td', { textContent: p.skipped ? `skipped: ${p.skipped}` : `${p.duration_ms.toFixed(1)} ms` })));
  $('plugins').tBodies[0].replaceChildren(...rows);
  const t = Object.entries(manifest.timings_ms || {}).map(([k, v]) => `${k} ${Math.round(v)} ms`).join(' · ');
  $('timings').textContent = t ? `Stages: ${t}` : '';
  $('job-plugins').hidden = rows.length === 0 && !t;
}

async function showJob(id) {
  stopFollowing();
  if (hls) { hls.destroy(); hls = null; }
  shownVideo = null;
  $('player').removeAttribute('src');
  delete $('player').dataset.codec;
  delete $('player').dataset.codecs;
  $('player').load();
  $('scenes').replaceChildren();
  for (const s of ['job-video', 'job-images', 'job-metadata', 'job-plugins', 'job-downloads', 'job-error']) $(s).hidden = true;
  $('job-title').textContent = 'Loading…';
  delete $('job-view').dataset.status;
  delete $('job-view').dataset.job;
  let job;
  try {
    job = await api('GET', `/v1/jobs/${encodeURIComponent(id)}`);
  } catch (e) {
    $('job-title').textContent = e.status === 404 ? 'No such job' : e.message;
    return;
  }
  renderJob(job);
  stopFollowing = follow(job, renderJob);
  $('cancel').onclick = async () => {
    $('cancel').disabled = true;
    try {
      renderJob(await api('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`));
    } catch (e) {
      $('cancel').disabled = false;
      $('job-error').hidden = false;
      $('job-error').textContent = `Cannot cancel: ${e.message}`;
    }
  };
}

// ---- Routing ----

function route() {
  const m = location.hash.match(/^#\/jobs\/([^/]+)$/);
  $('list-view').hidden = Boolean(m);
  $('job-view').hidden = !m;
  clearInterval(listTimer);
  if (m) {
    showJob(decodeURIComponent(m[1]));
  } else {
    stopFollowing();
    if (hls) { hls.destroy(); hls = null; }
    shownVideo = null;
    refreshList();
    listTimer = setInterval(refreshList, 3000);
  }
}

setUpKey();
setUpUploads();
setUpList();
window.addEventListener('hashchange', route);
route();
