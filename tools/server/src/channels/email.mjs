// E-mail over SMTP (nodemailer): the payload as the extension wrote it
// ({"to": [...], "subject", "body"}), from ctx.smtpFrom, with Message-ID
// <outbox-ID@toygun> and X-Toygun-Outbox-Id so a second copy of one row can
// be recognised. An SMTP 5xx answer (a refused recipient or message) is
// permanent; 4xx, network errors, timeouts and authentication failures (the
// server's configuration, not the message's) are retried.
import nodemailer from 'nodemailer';

// One transport per deliverer: smtp://user:pass@host:port or smtps://...
export function makeTransport(smtpUrl, timeoutMs) {
  return nodemailer.createTransport({
    url: smtpUrl, connectionTimeout: timeoutMs, greetingTimeout: timeoutMs, socketTimeout: timeoutMs,
  });
}

function hostOf(smtpUrl) {
  try { return new URL(smtpUrl).host; } catch { return '(SMTP server)'; }
}

export async function send(row, ctx) {
  const host = hostOf(ctx.smtpUrl);
  const p = row.payload;
  try {
    const info = await ctx.transport.sendMail({
      from: ctx.smtpFrom, to: p.to, subject: p.subject, text: p.body,
      messageId: `<outbox-${row.id}@toygun>`,
      headers: { 'X-Toygun-Outbox-Id': String(row.id), 'X-Toygun-Event': row.event },
    });
    return { result: 'delivered', detail: `accepted by ${host}${info.response ? `: ${oneLine(info.response)}` : ''}` };
  } catch (err) {
    const code = err.responseCode;
    const what = code ? `${code} from ${host}: ${oneLine(err.response || err.message)}`
                      : `${err.code || 'error'} with ${host}: ${oneLine(err.message)}`;
    if (err.code === 'EAUTH') return { result: 'retry', detail: `authentication refused by ${host} (check --smtp-url): ${oneLine(err.response || err.message)}` };
    if (code >= 500 && code < 600) return { result: 'permanent', detail: what };
    if (!code && err.code === 'EENVELOPE') return { result: 'permanent', detail: what };
    return { result: 'retry', detail: what };
  }
}

function oneLine(s) {
  const t = String(s).replace(/\s+/g, ' ').trim();
  return t.length > 200 ? t.slice(0, 200) + '...' : t;
}
