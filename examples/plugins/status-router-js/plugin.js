// status-router: a mediaflow notification rule in JavaScript (componentize-js).
//
// Routes each job event to named sinks (the engine's configuration says what a sink is: SNS,
// SQS, a webhook, the log):
//   failed, dead-lettered   -> `alerts`  (config `alerts_sink`)
//   retrying                -> `ops`     (config `ops_sink`)
//   succeeded               -> `events`  (config `events_sink`)
//   slower than `slow_ms`   -> also `ops`, whatever the status (once)
// Bodies are JSON; attributes (`status`, `profile`, `slow`, `error_code`) let SNS/SQS
// subscribers and webhook receivers filter without parsing the body.

import { config, log } from "mediaflow:plugin/host@0.1.1";

const DEFAULTS = {
  alerts_sink: "alerts",
  ops_sink: "ops",
  events_sink: "events",
  slow_ms: "5000",
};

// A plugin-error value: thrown, it becomes the `err` of `evaluate`'s result.
const badConfig = (message) => ({ tag: "bad-config", val: message });

function setting(key) {
  const raw = config(key) ?? DEFAULTS[key];
  // Non-string TOML values arrive as TOML text; a TOML string arrives bare.
  return raw.trim().replace(/^"(.*)"$/, "$1");
}

function sink(key) {
  const name = setting(key);
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
    throw badConfig(`config key \`${key}\` = ${JSON.stringify(name)} is not a sink name`);
  }
  return name;
}

function slowMs() {
  const text = setting("slow_ms");
  const ms = Number(text);
  if (!Number.isFinite(ms) || ms <= 0) {
    throw badConfig(`config key \`slow_ms\` = ${JSON.stringify(text)} must be a positive number of milliseconds`);
  }
  return ms;
}

// u64/s64 fields arrive as BigInt, which JSON.stringify refuses.
const num = (v) => (typeof v === "bigint" ? Number(v) : v);

function body(event, slow, threshold) {
  return JSON.stringify({
    event_id: event.id,
    job_id: event.jobId,
    status: event.status,
    source: event.sourceUri,
    profile: event.profile,
    attempt: event.attempt,
    duration_ms: event.durationMs,
    slow,
    slow_ms: threshold,
    outputs: event.outputs.map((o) => ({
      name: o.name,
      uri: o.uri,
      kind: o.kind,
      format: o.format,
      width: o.width,
      height: o.height,
      bytes: num(o.bytes),
    })),
    plugins: event.plugins.map((p) => ({ name: p.name, version: p.version, digest: p.digest })),
    error: event.error ? { class: event.error.class, code: event.error.code, message: event.error.message } : null,
  });
}

export const notifier = {
  evaluate(event) {
    const threshold = slowMs();
    const slow = event.durationMs > threshold;
    const route = {
      failed: "alerts_sink",
      "dead-lettered": "alerts_sink",
      retrying: "ops_sink",
      succeeded: "events_sink",
    }[event.status];
    if (route === undefined) {
      throw { tag: "unsupported", val: `unknown job status ${JSON.stringify(event.status)}` };
    }
    const attributes = [
      ["status", event.status],
      ["profile", event.profile],
      ["slow", String(slow)],
    ];
    if (event.error) attributes.push(["error_code", event.error.code]);

    const what = event.error ? `${event.status}: ${event.error.code}` : event.status;
    const primary = sink(route);
    const ops = sink("ops_sink");
    const out = [
      {
        sink: primary,
        subject: `mediaflow job ${event.jobId} ${what}`,
        body: body(event, slow, threshold),
        attributes,
      },
    ];
    // Slow jobs also reach ops (once: a slow retry is already there, marked `slow`).
    if (slow && primary !== ops) {
      out.push({
        sink: ops,
        subject: `mediaflow job ${event.jobId} slow: ${Math.round(event.durationMs)} ms (over ${threshold} ms)`,
        body: body(event, slow, threshold),
        attributes,
      });
    }
    log("debug", `${event.jobId} ${event.status} -> ${out.map((n) => n.sink).join(", ")}`);
    return out;
  },
};
