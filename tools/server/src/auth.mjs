// Opening a PostgreSQL connection as a person's role, with the password they
// typed, and refusing it unless PostgreSQL checked that password by SCRAM.
//
// Where pg_hba.conf says trust, peer or ident for the server's host, any
// password "works": the server would let anyone sign in as anyone. So the
// handshake is watched on pg's connection: only a completed SCRAM exchange
// (AuthenticationSASL ... AuthenticationSASLFinal, whose server signature
// pg verifies) before AuthenticationOk is accepted; MD5 and cleartext
// requests are refused before the password is sent.
import pg from 'pg';

export class AuthError extends Error {
  constructor(message, status = 401, sqlstate = null) {
    super(message);
    this.status = status;
    this.sqlstate = sqlstate;
  }
}

function hbaMessage(role, method) {
  return `sign-in refused: PostgreSQL did not check a SCRAM password for role "${role}" ` +
    `(it ${method}); the pg_hba.conf line that matches the server's connections must use ` +
    'scram-sha-256';
}

// Sign-ins in progress (forms, API, /metrics' new connections): each holds a
// PostgreSQL backend (or a connection slot) until its SCRAM exchange ends, and
// needs no session, so without a cap a flood of wrong passwords would take
// every connection PostgreSQL has. setMaxPending(n) from --max-signins-pending.
let pending = 0;
let maxPending = 10;
export function setMaxPending(n) { maxPending = n; }

// connectAs(db, role, password, applicationName) → a connected pg.Client
// whose password has been forgotten. Throws AuthError.
export async function connectAs(db, role, password, applicationName) {
  if (typeof role !== 'string' || role === '' || role.length > 63)
    throw new AuthError('sign-in needs a role name (1 to 63 characters)', 400);
  if (typeof password !== 'string' || password === '')
    throw new AuthError('sign-in needs a password', 400);
  if (role.includes('\0') || password.includes('\0'))
    throw new AuthError('a role name or password cannot hold a NUL character', 400);
  if (pending >= maxPending)
    throw new AuthError(`too many sign-ins in progress: the server's limit --max-signins-pending is ${maxPending}; ` +
      'try again in a moment', 503);
  pending++;
  try {
    return await connect(db, role, password, applicationName);
  } finally {
    pending--;
  }
}

async function connect(db, role, password, applicationName) {
  const client = new pg.Client({
    host: db.host, port: db.port, database: db.database, user: role, password,
    application_name: applicationName, connectionTimeoutMillis: 10000,
  });
  let scramDone = false;
  let refused = null;
  const con = client.connection;
  // These listeners are added before pg's own (added in connect()), so they
  // run first: an MD5 or cleartext request ends the socket before pg answers it.
  con.on('authenticationSASLFinal', () => { scramDone = true; });
  const refuse = (method) => () => {
    refused = refused || method;
    con.stream.destroy();
  };
  con.on('authenticationMD5Password', refuse('asked for an MD5 password'));
  con.on('authenticationCleartextPassword', refuse('asked for a cleartext password'));
  con.on('authenticationOk', () => {
    if (!scramDone) {
      refused = refused || 'accepted the connection without checking a password (trust, peer or ident)';
      con.stream.destroy();
    }
  });
  client.on('error', () => {});   // a later failure ends the session (session.mjs listens on 'end')
  try {
    await client.connect();
  } catch (e) {
    client.password = null;
    client.connectionParameters.password = null;
    if (refused) throw new AuthError(hbaMessage(role, refused), 401);
    if (e.code === '28P01' || e.code === '28000')
      throw new AuthError(`sign-in refused: wrong role or password for "${role}"`, 401, e.code);
    if (e.code === '3D000')
      throw new AuthError(`sign-in failed: ${e.message} (see --db-name)`, 503, e.code);
    if (e.code === '53300')
      throw new AuthError(`sign-in failed: ${e.message}`, 503, e.code);
    throw new AuthError(`sign-in failed: could not connect to PostgreSQL at ${db.host}:${db.port} ` +
      `database "${db.database}": ${e.message}`, 503, e.code || null);
  }
  // The password is not kept: not in the session, not in pg's client.
  client.password = null;
  client.connectionParameters.password = null;
  if (refused || !scramDone) {
    await client.end().catch(() => {});
    throw new AuthError(hbaMessage(role, refused || 'did not complete a SCRAM exchange'), 401);
  }
  try {
    await client.query("SELECT pg_catalog.set_config('statement_timeout', '15s', false), " +
      "pg_catalog.set_config('idle_in_transaction_session_timeout', '30s', false)");
  } catch (e) {
    await client.end().catch(() => {});
    throw new AuthError(`sign-in failed: ${e.message}`, 503, e.code);
  }
  return client;
}

// whoami(client) → toygun.ops_whoami(): {role, superuser, types: {type: [rights]}}
export async function whoami(client) {
  try {
    const r = await client.query('SELECT toygun.ops_whoami() AS w');
    return r.rows[0].w;
  } catch (e) {
    await client.end().catch(() => {});
    if (e.code === '3F000' || e.code === '42883')
      throw new AuthError('toygun 0.4 is not installed in this database (CREATE EXTENSION toygun, or ' +
        'ALTER EXTENSION toygun UPDATE)', 503, e.code);
    throw new AuthError(`sign-in failed: ${e.message}`, 503, e.code);
  }
}
