// An identity provider for the tests of `auth = "oauth"`: oidc-provider on loopback, issuing
// JWT access tokens by client credentials for the resource given with --resource (and for
// `<issuer>/other`, another audience). Clients:
//   alice-svc, bob-svc  tokens with groups, roles and email claims (alice: ops/admin)
//   short               tokens that live one second
//   future              tokens whose `nbf` is ten minutes ahead
//   opaque              opaque tokens (introspection only)
//   portcullis-rs       the gateway, introspecting (secret `rs-secret`)
// Each token client's secret is `<client>-secret`. `POST /_test/rotate` replaces the signing key
// (`?keep=1` keeps the old one published beside it). Every request is printed
// (`request GET /jwks`), so tests can count key fetches.
//
//   node oidc_issuer.mjs [--port N] [--resource URL] [--alg RS256|ES256|EdDSA] [--keys FILE]
//
// --keys FILE shares the signing keys with another instance (a wrong issuer with the same kid).
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const args = process.argv.slice(2);
const flag = (n, d) => {
  const i = args.indexOf(n);
  return i >= 0 ? args[i + 1] : d;
};
const ALG = flag('--alg', 'RS256');
const KEYS = flag('--keys');

const newKey = () => {
  const [type, options] =
    ALG === 'ES256' ? ['ec', { namedCurve: 'P-256' }] : ALG === 'EdDSA' ? ['ed25519'] : ['rsa', { modulusLength: 2048 }];
  const jwk = generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomUUID(), alg: ALG, use: 'sig' };
};

let keys = KEYS && existsSync(KEYS) ? JSON.parse(readFileSync(KEYS, 'utf8')) : [newKey()];
if (KEYS) writeFileSync(KEYS, JSON.stringify(keys));

const server = http.createServer();
await new Promise((resolve) => server.listen(Number(flag('--port', '0')), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
const RESOURCE = flag('--resource', `${issuer}/mcp`);
const OTHER = `${issuer}/other`;

const CLAIMS = {
  'alice-svc': { groups: ['ops'], roles: ['admin'], email: 'alice@corp.test' },
  'bob-svc': { groups: [], roles: [], email: 'bob@corp.test' },
};
const client = (id) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
});

const build = () => {
  const provider = new Provider(issuer, {
    jwks: { keys },
    clientDefaults: { id_token_signed_response_alg: ALG },
    clients: ['alice-svc', 'bob-svc', 'short', 'future', 'opaque'].map(client).concat({
      // The gateway itself, as the resource server that introspects opaque tokens.
      client_id: 'portcullis-rs',
      client_secret: 'rs-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    }),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        getResourceServerInfo: (_ctx, indicator, c) => {
          if (indicator !== RESOURCE && indicator !== OTHER) throw new errors.InvalidTarget();
          return {
            scope: 'mcp:read mcp:write mcp:admin',
            audience: indicator,
            accessTokenFormat: c.clientId === 'opaque' ? 'opaque' : 'jwt',
            jwt: { sign: { alg: ALG } },
          };
        },
      },
    },
    ttl: { ClientCredentials: (_ctx, _token, c) => (c.clientId === 'short' ? 1 : 600) },
    extraTokenClaims: (_ctx, token) => CLAIMS[token.clientId],
    formats: {
      customizers: {
        jwt: (_ctx, token, jwt) => {
          if (token.clientId === 'future') jwt.payload.nbf = jwt.payload.iat + 600;
        },
      },
    },
  });
  provider.on('grant.success', (ctx) => console.log(`token ${ctx.oidc.client.clientId}`));
  return provider;
};

let handler = build().callback();
server.on('request', (req, res) => {
  console.log(`request ${req.method} ${req.url}`);
  if (req.method === 'POST' && req.url.startsWith('/_test/rotate')) {
    keys = req.url.includes('keep=1') ? [newKey(), ...keys] : [newKey()];
    handler = build().callback();
    console.log(`rotated ${keys[0].kid}`);
    res.setHeader('content-type', 'application/json');
    return res.end(JSON.stringify({ kid: keys[0].kid }));
  }
  handler(req, res);
});
console.log(`listening ${issuer}`);
