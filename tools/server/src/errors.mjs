// PostgreSQL errors → HTTP statuses and the {"error": {...}} body, as the CLI
// maps them to exit codes.
export class HttpError extends Error {
  constructor(status, message, extra = {}) {
    super(message);
    this.status = status;
    Object.assign(this, extra);
  }
}

export function statusOf(e) {
  if (e.status) return e.status;
  const code = e.code;
  if (typeof code !== 'string' || code.length !== 5) {
    // no SQLSTATE: the connection is gone (ended session, server restart)
    return 503;
  }
  if (code === 'P0002' || code === '42704') return 404;
  if (code === '42501') return 403;
  if (['55000', '55006', '55P03', '40001', '40P01', '23505'].includes(code)) return 409;
  if (code.startsWith('22') || ['23502', '23514', '42703', '42939'].includes(code)) return 400;
  if (code === '57014' || code.startsWith('08') || code === '57P01') return 503;
  return 500;
}

export function errorBody(e) {
  const error = {
    sqlstate: e.sqlstate ?? (typeof e.code === 'string' && e.code.length === 5 ? e.code : null),
    message: e.message || String(e),
    detail: e.detail ?? null,
    hint: e.hint ?? null,
  };
  if (e.errorCode) error.code = e.errorCode;
  if ((error.sqlstate === '42883' || error.sqlstate === '3F000') && !error.hint)
    error.hint = 'toygun 0.4 is not installed in this database: ALTER EXTENSION toygun UPDATE';
  return { error };
}
