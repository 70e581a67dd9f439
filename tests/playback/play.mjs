#!/usr/bin/env node
// Plays an HLS playlist the way a viewer's browser would: headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) runs hls.js from this folder's node_modules,
// plays a few seconds, then switches to every quality level in turn and checks that each one
// loads, plays and shows its own picture size. Prints one JSON report on stdout; progress and
// diagnostics go to stderr.
//
//   node play.mjs PLAYLIST [--root DIR] [--timeout SECONDS] [--chromium PATH] [--cue-at SECONDS]...
//
// With --cue-at, every subtitle track hls.js lists is selected in turn after the levels
// have played, the player seeks to each given time, and the report's `subtitles` says what
// the <video> element showed there (its showing text track's active cues).
//
// PLAYLIST is a local .m3u8 file (a master playlist or a single media playlist) or an
// http://127.0.0.1 URL. A local file is served by a tiny static HTTP server this script starts
// on 127.0.0.1:0, which also serves player.html and hls.js; --root is the folder served under
// /media/ (default: the playlist's own folder; every URI in the playlists must stay inside it).
//
// Exit status: 0 when every level played and hls.js raised no fatal error; 1 when playback
// failed (the report's failureReasons say why); 2 for bad usage; 3 when the overall time
// limit ran out (the report is still printed).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// ------------------------------------------------------------------------------------------
// Arguments.
// ------------------------------------------------------------------------------------------

function usage(message) {
  if (message) process.stderr.write(`play.mjs: ${message}\n`);
  process.stderr.write('usage: node play.mjs PLAYLIST(.m3u8 file or http URL) [--root DIR] [--timeout SECONDS] [--chromium PATH]\n');
  process.exit(2);
}

const opts = {
  playlist: null,
  root: null,
  timeoutS: Number(process.env.PLAYBACK_TIMEOUT_S || 90),
  chromium: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  initialSeconds: 2,     // play this far before the first switch
  playSeconds: 0.75,     // after a switch, the new level must play this long
  stepTimeoutS: 20,      // one step (start, one switch) may take this long
  cueTimes: [],          // where to look for subtitles (--cue-at)
};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--root') opts.root = value();
    else if (a === '--timeout') opts.timeoutS = Number(value());
    else if (a === '--chromium') opts.chromium = value();
    else if (a === '--cue-at') opts.cueTimes.push(Number(value()));
    else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else if (opts.playlist === null) opts.playlist = a;
    else usage(`unexpected argument ${a}`);
  }
  if (!opts.playlist) usage('no playlist given');
  if (!(opts.timeoutS > 0)) usage('--timeout must be a positive number of seconds');
}

const log = (...parts) => process.stderr.write(`[play ${((Date.now() - T0) / 1000).toFixed(1)}s] ${parts.join(' ')}\n`);
const T0 = Date.now();

// ------------------------------------------------------------------------------------------
// The report, printed exactly once whatever happens.
// ------------------------------------------------------------------------------------------

const report = {
  ok: false,
  playlist: opts.playlist,
  src: null,
  browser: null,
  hlsVersion: null,
  codecSupport: null,
  levels: [],
  fatalErrors: [],
  nonFatalErrors: [],
  failureReasons: [],
  currentTime: null,
  duration: null,
  audioDecodedBytes: null,
  totalVideoFrames: null,
  droppedVideoFrames: null,
  elapsedMs: null,
  http: { requests: 0, failed: [] },
  pageErrors: [],
  consoleErrors: [],
  videoErrors: [],
  subtitles: [],
};
let reported = false;
let browser = null;
let server = null;
let page = null;

function fail(reason) {
  if (!report.failureReasons.includes(reason)) report.failureReasons.push(reason);
  log('FAIL:', reason);
}

async function collectFromPage() {
  if (!page) return;
  try {
    const snap = await withTimeout(page.evaluate(() => ({
      state: window.playerState(),
      errors: window.player.errors,
      videoEvents: window.player.videoEvents,
      events: window.player.events.slice(-60),
    })), 5000, 'reading the page state');
    report.currentTime = snap.state.currentTime;
    report.duration = Number.isFinite(snap.state.duration) ? snap.state.duration : null;
    report.audioDecodedBytes = snap.state.audioDecodedBytes;
    report.totalVideoFrames = snap.state.totalVideoFrames;
    report.droppedVideoFrames = snap.state.droppedVideoFrames;
    report.fatalErrors = snap.errors.filter((e) => e.fatal);
    report.nonFatalErrors = snap.errors.filter((e) => !e.fatal);
    report.videoErrors = snap.videoEvents.filter((e) => e.event === 'error');
    report.finalState = snap.state;
    if (!report.ok) report.lastEvents = snap.events;
  } catch (e) {
    report.failureReasons.push(`could not read the final page state: ${e.message}`);
  }
}

async function finish(exitCode) {
  if (reported) return;
  reported = true;
  clearTimeout(overallTimer);
  await collectFromPage();
  if (report.fatalErrors.length) {
    for (const e of report.fatalErrors) fail(`hls.js fatal error ${e.type}/${e.details}${e.reason ? ` (${e.reason})` : ''}${e.message ? `: ${e.message}` : ''}`);
  }
  report.ok = exitCode === 0 && report.failureReasons.length === 0;
  report.elapsedMs = Date.now() - T0;
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  const closing = [];
  if (browser) closing.push(withTimeout(browser.close(), 5000, 'closing Chromium').catch(() => {}));
  if (server) closing.push(new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); setTimeout(r, 1000); }));
  await Promise.all(closing);
  process.exit(report.ok ? 0 : exitCode || 1);
}

// The hard limit: whatever hangs, the script prints its report and exits.
const overallTimer = setTimeout(() => {
  fail(`overall time limit of ${opts.timeoutS} s ran out`);
  // Give the page-state read and browser close a few seconds, then go regardless.
  setTimeout(() => { process.stdout.write(JSON.stringify(report, null, 2) + '\n'); process.exit(3); }, 10000).unref();
  finish(3);
}, opts.timeoutS * 1000);

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms); }),
  ]);
}

process.on('unhandledRejection', (e) => { fail(`unexpected error: ${e && e.stack || e}`); finish(1); });

// ------------------------------------------------------------------------------------------
// The static server: the page, hls.js, and the HLS output folder.
// ------------------------------------------------------------------------------------------

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.ts': 'video/mp2t',
  '.m4s': 'video/iso.segment',
  '.mp4': 'video/mp4',
  '.m4a': 'audio/mp4',
  '.aac': 'audio/aac',
  '.vtt': 'text/vtt',
  '.jpg': 'image/jpeg',
  '.png': 'image/png',
};

/** `rel` resolved under `base`, or null if it would leave it. */
function inside(base, rel) {
  const full = path.resolve(base, '.' + path.posix.normalize('/' + rel));
  return full === base || full.startsWith(base + path.sep) ? full : null;
}

function startServer(mediaRoot) {
  const hlsDist = path.join(HERE, 'node_modules', 'hls.js', 'dist');
  const srv = http.createServer((req, res) => {
    report.http.requests++;
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    let file = null;
    if (pathname === '/' || pathname === '/player.html') file = path.join(HERE, 'player.html');
    else if (pathname.startsWith('/vendor/hls.js/')) file = inside(hlsDist, pathname.slice('/vendor/hls.js/'.length));
    else if (pathname === '/favicon.ico') { res.writeHead(204).end(); return; }
    else if (mediaRoot && pathname.startsWith('/media/')) file = inside(mediaRoot, pathname.slice('/media/'.length));
    const notFound = (status) => {
      report.http.failed.push({ path: pathname, status });
      res.writeHead(status, { 'Content-Type': 'text/plain' }).end(`${status}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return notFound(405);
    if (!file) return notFound(404);
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) return notFound(404);
      const type = CONTENT_TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream';
      res.writeHead(200, {
        'Content-Type': type,
        'Content-Length': st.size,
        'Cache-Control': 'no-store',
      });
      if (req.method === 'HEAD') return res.end();
      fs.createReadStream(file).on('error', () => res.destroy()).pipe(res);
    });
  });
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

// ------------------------------------------------------------------------------------------
// Driving the player.
// ------------------------------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const state = () => withTimeout(page.evaluate(() => window.playerState()), 5000, 'reading the player state');

/** Polls `check(state)` until it returns a truthy value; returns it, or null after `seconds`. */
async function until(seconds, check) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const st = await state();
    if (st.fatalCount > 0) return null;
    const v = await check(st);
    if (v) return v;
    if (Date.now() > deadline) return null;
    await sleep(100);
  }
}

async function main() {
  // Where the playlist comes from.
  let src;
  if (/^https?:\/\//i.test(opts.playlist)) {
    src = opts.playlist;
    server = await startServer(null);
  } else {
    const file = path.resolve(opts.playlist);
    if (!fs.existsSync(file)) usage(`no such file: ${file}`);
    const root = path.resolve(opts.root || path.dirname(file));
    const rel = path.relative(root, file);
    if (rel.startsWith('..') || path.isAbsolute(rel)) usage(`${file} is not inside --root ${root}`);
    server = await startServer(root);
    src = `http://127.0.0.1:${server.address().port}/media/${rel.split(path.sep).map(encodeURIComponent).join('/')}`;
  }
  const origin = `http://127.0.0.1:${server.address().port}`;
  report.src = src;
  log('serving on', origin, 'playlist', src);

  if (!fs.existsSync(path.join(HERE, 'node_modules', 'hls.js', 'dist', 'hls.js'))) {
    fail(`hls.js is not installed: run \`npm ci --prefix ${path.relative(process.cwd(), HERE) || '.'}\``);
    return finish(1);
  }
  if (!fs.existsSync(opts.chromium)) {
    fail(`Chromium is not at ${opts.chromium}: install Debian's \`chromium\` package`);
    return finish(1);
  }

  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    fail(`playwright-core is not installed (${e.message}): run \`npm ci --prefix tests/playback\``);
    return finish(1);
  }

  log('launching', opts.chromium);
  // playwright-core gives every launch a fresh, empty user-data-dir of its own. The flags keep
  // Chromium off the network (only loopback is reachable here) and let muted video autoplay.
  browser = await chromium.launch({
    executablePath: opts.chromium,
    headless: true,
    timeout: 30000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-domain-reliability',
      '--disable-breakpad',
      '--metrics-recording-only',
      '--no-default-browser-check',
      '--autoplay-policy=no-user-gesture-required',
      '--mute-audio',
    ],
  });
  report.browser = `Chromium ${browser.version()}`;
  log('browser', report.browser);
  page = await browser.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => { report.pageErrors.push(String(e && e.stack || e)); log('page error:', e); });
  page.on('console', (m) => {
    if (m.type() === 'error') {
      const text = m.text();
      report.consoleErrors.push(text);
      if (report.consoleErrors.length > 50) report.consoleErrors.shift();
    }
  });
  page.on('crash', () => { fail('the Chromium page crashed'); finish(1); });
  // Nothing but our own server may be reached.
  await page.route((url) => !url.href.startsWith(origin + '/') && !src.startsWith(url.origin + '/'), (route) => {
    report.http.failed.push({ path: route.request().url(), status: 'blocked: not loopback' });
    route.abort('blockedbyclient');
  });

  await page.goto(`${origin}/player.html`, { waitUntil: 'load' });

  // 1. Can this Chromium decode what hls.js will hand to MSE at all?
  report.codecSupport = await page.evaluate(() => window.codecSupport());
  report.hlsVersion = report.codecSupport.hlsVersion;
  log('codec support', JSON.stringify(report.codecSupport));
  if (!report.codecSupport.hlsIsSupported) {
    fail('hls.js reports that this browser has no usable MediaSource (Hls.isSupported() is false)');
    return finish(1);
  }
  if (!report.codecSupport['video/mp4; codecs="avc1.64001f,mp4a.40.2"']) {
    fail('this Chromium cannot decode H.264 High + AAC-LC through MSE: MediaSource.isTypeSupported(\'video/mp4; codecs="avc1.64001f,mp4a.40.2"\') is false (a Chromium build without proprietary codecs?)');
    return finish(1);
  }

  // 2. Load and start playing.
  await page.evaluate((s) => window.startPlayer(s), src);
  const parsed = await until(opts.stepTimeoutS, async () => {
    const levels = await page.evaluate(() => (window.player.manifestParsed ? window.player.levels : null));
    return levels && levels.length ? levels : null;
  });
  if (!parsed) {
    fail('hls.js never parsed the playlist (MANIFEST_PARSED did not fire)');
    return finish(1);
  }
  report.levels = parsed.map((l) => ({
    index: l.index,
    width: l.width,
    height: l.height,
    bitrate: l.bitrate,
    codecs: l.codecs,
    url: l.url,
    played: false,
  }));
  log('levels', report.levels.map((l) => `${l.index}:${l.width}x${l.height}@${l.bitrate}`).join(' '));
  // Every advertised codec string must be playable, or hls.js drops the level.
  const levelCodecs = [...new Set(parsed.flatMap((l) => [l.videoCodec && `video/mp4; codecs="${l.videoCodec}"`, l.audioCodec && `audio/mp4; codecs="${l.audioCodec}"`]).filter(Boolean))];
  const perLevel = await page.evaluate((types) => Object.fromEntries(types.map((t) => [t, MediaSource.isTypeSupported(t)])), levelCodecs);
  Object.assign(report.codecSupport, perLevel);
  for (const [t, ok] of Object.entries(perLevel)) if (!ok) fail(`MSE cannot play the advertised codec ${t}`);

  const duration = (await until(opts.stepTimeoutS, (st) => (Number.isFinite(st.duration) && st.duration > 0 ? st.duration : null))) || 0;
  const initial = Math.min(opts.initialSeconds, Math.max(0.2, duration - 1));
  const started = await until(opts.stepTimeoutS, (st) => st.currentTime >= initial && !st.paused);
  if (!started) {
    const st = await state();
    fail(`playback did not reach ${initial} s within ${opts.stepTimeoutS} s (currentTime ${st.currentTime}, paused ${st.paused}, readyState ${st.readyState})`);
    return finish(1);
  }
  log(`playing: currentTime ${started ? (await state()).currentTime.toFixed(2) : '?'} of ${duration.toFixed(2)} s`);

  // 3. Switch to every level. Start with the one after the level now playing, so every step
  // is a real switch (LEVEL_SWITCHED fires only when the playing level changes); the level
  // that played first comes last.
  const n = report.levels.length;
  const startLevel = (await state()).playingLevel ?? 0;
  const order = n === 1 ? [0] : Array.from({ length: n }, (_, k) => (startLevel + 1 + k) % n);
  const need = opts.playSeconds + 2.5; // room left before the end for one switch to play
  for (const i of order) {
    const level = report.levels[i];
    const tStep = Date.now();
    let st = await state();
    if (st.fatalCount > 0) break;
    if (n > 1 && duration && st.currentTime > duration - need) {
      // Not enough media left for this switch to be seen playing: go back near the start,
      // the way a viewer would scrub.
      log(`seeking back to 0.5 s (currentTime ${st.currentTime.toFixed(2)})`);
      await page.evaluate(() => { document.getElementById('video').currentTime = 0.5; });
      const resumed = await until(opts.stepTimeoutS, (s) => s.currentTime >= 0.5 && s.currentTime < duration - need && !s.paused && s.readyState >= 3);
      if (!resumed) {
        fail(`after seeking back to 0.5 s playback did not resume (before switching to level ${i})`);
        break;
      }
    }
    const marks = await page.evaluate((lv) => {
      const p = window.player;
      // A lone level never switches: its initial LEVEL_SWITCHED and fragments count.
      if (p.hls.levels.length === 1) return { switched: 0, changed: 0, loaded: 0 };
      const m = { switched: p.levelSwitched.length, changed: p.fragChanged.length, loaded: p.fragLoaded.length };
      p.hls.currentLevel = lv;
      return m;
    }, i);
    level.levelSwitched = false;
    level.fragmentLoaded = false;
    level.fragmentPlaying = false;
    // Wait for: a fragment of level i loaded, LEVEL_SWITCHED to i, the playhead inside a
    // fragment of level i.
    const reached = await until(opts.stepTimeoutS, async (s) => {
      const seen = await page.evaluate(([m, lv]) => {
        const p = window.player;
        return {
          switched: p.levelSwitched.slice(m.switched).some((e) => e.level === lv),
          loaded: p.fragLoaded.slice(m.loaded).some((e) => e.level === lv),
          playing: p.fragChanged.slice(m.changed).some((e) => e.level === lv),
        };
      }, [marks, i]);
      if (seen.switched) level.levelSwitched = true;
      if (seen.loaded) level.fragmentLoaded = true;
      if (seen.playing) level.fragmentPlaying = true;
      return level.levelSwitched && level.fragmentLoaded && level.fragmentPlaying && s.playingLevel === i ? s : null;
    });
    if (!reached) {
      st = await state();
      fail(`switching to level ${i} (${level.width}x${level.height}) stalled: after ${opts.stepTimeoutS} s LEVEL_SWITCHED=${level.levelSwitched}, fragment loaded=${level.fragmentLoaded}, fragment playing=${level.fragmentPlaying}; currentTime ${st.currentTime.toFixed(2)}, playing level ${st.playingLevel}, paused ${st.paused}, ended ${st.ended}, readyState ${st.readyState}`);
      break;
    }
    // It must then actually play (the clock moves) and show the level's picture size.
    const from = reached.currentTime;
    const played = await until(opts.stepTimeoutS, (s) => (s.currentTime >= Math.min(from + opts.playSeconds, duration - 0.1) && s.playingLevel === i ? s : null));
    if (!played) {
      st = await state();
      fail(`level ${i} (${level.width}x${level.height}) was switched to but did not play: currentTime stayed near ${st.currentTime.toFixed(2)} (from ${from.toFixed(2)}), paused ${st.paused}, readyState ${st.readyState}`);
      break;
    }
    // A media playlist loaded on its own (a preview) gives hls.js no RESOLUTION: then any
    // decoded picture will do, and the report shows its size.
    const sizeKnown = level.width > 0 && level.height > 0;
    const sized = await until(5, (s) => (sizeKnown ? s.videoWidth === level.width && s.videoHeight === level.height : s.videoWidth > 0 && s.videoHeight > 0) ? s : null);
    st = sized || (await state());
    level.videoWidth = st.videoWidth;
    level.videoHeight = st.videoHeight;
    level.switchMs = Date.now() - tStep;
    level.playedFrom = from;
    level.playedTo = st.currentTime;
    if (!sized) {
      fail(sizeKnown
        ? `after switching to level ${i} the picture is ${st.videoWidth}x${st.videoHeight}, but the playlist says ${level.width}x${level.height}`
        : `level ${i} played but Chromium shows no picture (videoWidth x videoHeight = ${st.videoWidth}x${st.videoHeight})`);
      break;
    }
    level.played = true;
    log(`level ${i} ${level.width}x${level.height} played ${from.toFixed(2)} -> ${st.currentTime.toFixed(2)} s (${level.switchMs} ms)`);
  }

  // 4. Subtitles: each track hls.js lists, selected and shown, read back at the cue times.
  const tracks = await page.evaluate(() => (window.player.hls.subtitleTracks || []).map((t) => ({
    id: t.id, name: t.name, lang: t.lang, forced: !!t.forced, default: !!t.default, autoselect: !!t.autoselect,
  })));
  for (const track of tracks) {
    await page.evaluate((id) => { const h = window.player.hls; h.subtitleDisplay = true; h.subtitleTrack = id; }, track.id);
    track.shown = [];
    for (const at of opts.cueTimes) {
      // Paused at the moment, so the playhead stays there while hls.js loads the track's
      // fragment for it. Once the seek is done, the cues the element shows (its active cues
      // that contain the playhead) are read; a moment with no cue is given 3 s for the
      // fragment to arrive, then read as empty.
      await page.evaluate((t) => { const v = document.getElementById('video'); v.pause(); v.currentTime = t; }, at);
      const read = (t) => page.evaluate((at) => {
        const v = document.getElementById('video');
        if (v.seeking || Math.abs(v.currentTime - at) > 0.05) return null;
        const now = v.currentTime;
        const showing = [...v.textTracks].filter((tt) => tt.mode === 'showing');
        const texts = showing.flatMap((tt) => [...(tt.activeCues || [])]
          .filter((c) => c.startTime <= now && now < c.endTime)
          .map((c) => c.text));
        return { texts, currentTime: now, label: showing.map((tt) => tt.label).join(',') };
      }, t);
      const settled = await until(10, () => read(at));
      const seen = settled && ((await until(3, async () => { const r = await read(at); return r && r.texts.length ? r : null; })) || (await read(at)));
      track.shown.push({ at, texts: seen ? seen.texts : [], currentTime: seen ? seen.currentTime : null, label: seen ? seen.label : null });
      log(`subtitles ${track.lang}/${track.name} at ${at} s: ${JSON.stringify(seen ? seen.texts : [])}`);
    }
    report.subtitles.push(track);
  }

  // 5. The verdict.
  const st = await state();
  for (const l of report.levels) if (!l.played && !report.failureReasons.some((r) => r.includes(`level ${l.index} `))) fail(`level ${l.index} (${l.width}x${l.height}) was not played`);
  const hasAudio = report.levels.some((l) => /mp4a/.test(l.codecs || ''));
  if (hasAudio && !(st.audioDecodedBytes > 0)) fail(`the playlist advertises AAC audio, but Chromium decoded no audio (webkitAudioDecodedByteCount ${st.audioDecodedBytes})`);
  if (st.mediaError) fail(`the <video> element reports MediaError ${st.mediaError.code}: ${st.mediaError.message}`);
  if (report.pageErrors.length) fail(`the page threw: ${report.pageErrors[0]}`);
  return finish(report.failureReasons.length ? 1 : 0);
}

main().catch((e) => {
  fail(`play.mjs failed: ${e && e.stack || e}`);
  return finish(1);
});
