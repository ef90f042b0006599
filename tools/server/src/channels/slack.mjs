// A Slack incoming webhook: POST the payload as the extension wrote it
// ({"text": "[toygun] alarm opened: ..."}) to config.webhook_url. Slack
// answers 200 "ok"; 400/403/404/410 (a bad payload, a revoked or archived
// hook) are permanent, 429 (with Retry-After) and 5xx are retried. Slack does
// not de-duplicate: the row's id headers are sent, and ignored by Slack.
import { postJson, idHeaders } from './http.mjs';

export function send(row, ctx) {
  return postJson(row.config.webhook_url, row.payload, {
    headers: idHeaders(row), timeoutMs: ctx.timeoutMs, signal: ctx.signal,
  });
}
