// PagerDuty Events API v2: POST the event as the extension wrote it
// ({"routing_key", "event_action": "trigger"|"resolve", "dedup_key": the
// alarm's id, "payload": {...}}) to the Events URL (ctx.pagerdutyUrl).
// PagerDuty answers 202; a repeated trigger with one dedup_key is merged
// into the open incident, so a second send of one row pages no one twice.
import { postJson, idHeaders } from './http.mjs';

export function send(row, ctx) {
  return postJson(ctx.pagerdutyUrl, row.payload, {
    headers: idHeaders(row), timeoutMs: ctx.timeoutMs, signal: ctx.signal,
  });
}
