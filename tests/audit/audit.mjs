// Runs graphql-http's auditServer against a live server and prints the results as JSON.
// Usage: node audit.mjs URL; the API key comes from SESSIONGRAPH_AUDIT_KEY and is added to
// every request (the audit itself sends none, and the server refuses keyless requests).
import { auditServer } from 'graphql-http';

const url = process.argv[2];
const key = process.env.SESSIONGRAPH_AUDIT_KEY;

function fetchWithKey(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set('X-API-Key', key);
  return fetch(input, { ...init, headers });
}

const results = await auditServer({ url, fetchFn: fetchWithKey });
const report = await Promise.all(
  results.map(async (result) => {
    if (result.status === 'ok') return { id: result.id, name: result.name, status: 'ok' };
    let body = null;
    try {
      body = await result.response.text();
    } catch {
      // the audit may have read the body already
    }
    return {
      id: result.id,
      name: result.name,
      status: result.status,
      reason: result.reason,
      httpStatus: result.response.status,
      body,
    };
  }),
);
process.stdout.write(JSON.stringify(report));
