// A generic webhook channel: POST the payload as the extension wrote it
// ({"event", "alarm": {...}}) as JSON to config.url, with the row's
// Idempotency-Key and X-Toygun-Outbox-Id, and X-Toygun-Event.
import { postJson, idHeaders } from './http.mjs';

export function send(row, ctx) {
  return postJson(row.config.url, row.payload, {
    headers: { ...idHeaders(row), 'x-toygun-event': row.event },
    timeoutMs: ctx.timeoutMs, signal: ctx.signal,
  });
}
