#!/usr/bin/env node
// Loads a waveform.json written by transcoder with waveform-data (the BBC library that
// Peaks.js uses in the browser) and checks that a player would see what we meant to write.
//
// Usage: node check-waveform.mjs PATH_TO_JSON EXPECTED_DURATION_SECONDS
//
// Prints a JSON summary on stdout. Exits 0 when every check passes, 1 when one fails (each
// failure on stderr), 2 on bad usage or an unreadable file.

import { readFile } from 'node:fs/promises';
import WaveformData from 'waveform-data';

const POINTS_PER_SECOND = 10;
const DURATION_TOLERANCE_S = 0.2;

function usage(message) {
  console.error(`check-waveform: ${message}`);
  console.error('usage: node check-waveform.mjs PATH_TO_JSON EXPECTED_DURATION_SECONDS');
  process.exit(2);
}

const [path, durationArg] = process.argv.slice(2);
if (!path || durationArg === undefined) {
  usage('missing arguments');
}
const expectedDuration = Number(durationArg);
if (!Number.isFinite(expectedDuration) || expectedDuration <= 0) {
  usage(`EXPECTED_DURATION_SECONDS must be a positive number, got ${JSON.stringify(durationArg)}`);
}

let json;
try {
  json = JSON.parse(await readFile(path, 'utf8'));
} catch (e) {
  console.error(`check-waveform: cannot read ${path}: ${e.message}`);
  process.exit(2);
}

const failures = [];
const check = (ok, message) => {
  if (!ok) failures.push(message);
};

let waveform;
try {
  waveform = WaveformData.create(json);
} catch (e) {
  console.error(`check-waveform: waveform-data rejected ${path}: ${e.message}`);
  process.exit(1);
}

const summary = {
  version: json.version,
  channels: waveform.channels,
  sample_rate: waveform.sample_rate,
  scale: waveform.scale,
  length: waveform.length,
  duration: waveform.duration,
  bits: waveform.bits,
  pixels_per_second: waveform.pixels_per_second,
};

// waveform-data converts any JSON to its binary version 2 layout, so read the version from
// the file itself.
check(json.version === 2, `version is ${json.version}, expected 2`);
check(waveform.bits === 8, `bits is ${waveform.bits}, expected 8`);
check(waveform.channels === 1, `channels is ${waveform.channels}, expected 1`);
check(
  waveform.pixels_per_second === POINTS_PER_SECOND,
  `sample_rate / scale is ${waveform.pixels_per_second}, expected ${POINTS_PER_SECOND}`,
);

const expectedLength = Math.ceil(expectedDuration * POINTS_PER_SECOND);
check(
  Math.abs(waveform.length - expectedLength) <= 1,
  `length is ${waveform.length}, expected ${expectedLength} ± 1`,
);
check(
  Math.abs(waveform.duration - expectedDuration) <= DURATION_TOLERANCE_S,
  `duration is ${waveform.duration} s, expected ${expectedDuration} ± ${DURATION_TOLERANCE_S} s`,
);

const channel = waveform.channel(0);
const min = channel.min_array();
const max = channel.max_array();
check(min.length === waveform.length, `min_array() has ${min.length} values, expected ${waveform.length}`);
check(max.length === waveform.length, `max_array() has ${max.length} values, expected ${waveform.length}`);

// waveform-data stores 8-bit values with setInt8, which wraps silently: check the raw JSON.
const outOfRange = json.data.findIndex((v) => !Number.isInteger(v) || v < -128 || v > 127);
check(outOfRange === -1, `data[${outOfRange}] = ${json.data[outOfRange]} is not an integer in -128..127`);
const inverted = min.findIndex((v, i) => v > max[i]);
check(inverted === -1, `point ${inverted} has min ${min[inverted]} > max ${max[inverted]}`);

// A loop, not Math.max(...array): a 3-hour file has 108,000 points, too many arguments.
let peak = 0;
for (let i = 0; i < waveform.length; i++) {
  peak = Math.max(peak, Math.abs(min[i]), Math.abs(max[i]));
}
summary.peak = peak;
summary.ok = failures.length === 0;
console.log(JSON.stringify(summary));

if (failures.length > 0) {
  for (const f of failures) console.error(`check-waveform: ${f}`);
  process.exit(1);
}
