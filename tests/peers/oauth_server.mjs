// A real OAuth 2.1 authorization server for the tests: oidc-provider (authorization code with
// PKCE, refresh tokens with rotation, revocation, introspection), on 127.0.0.1, in memory.
//
// Only the login and consent screens are replaced: the account `alice` logs in and consents to
// what is asked at once (or, with `--deny`, refuses), so a test can drive the flow with curl as
// the browser. The API the tokens are for is the resource `<issuer>/api` with the scopes
// `mail.read mail.send mail.delete`; a resource server checks a token at the introspection
// endpoint as client `api` / `api-secret`.
//
// Prints `listening <issuer>` once ready, then one line per event the tests watch:
// `token <grant_type> <scope>` for each token issued, `revoked grant` when a grant is revoked.
//
// Usage: node oauth_server.mjs [--ttl SECONDS] [--deny] [--scopes "SCOPE SCOPE ..."]
// (`--scopes` replaces the API's scopes, e.g. with Gmail's scope URLs.)

import http from 'node:http';
import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const TTL = Number(flag('--ttl', '3600'));
const DENY = args.includes('--deny');
const SCOPES = flag('--scopes', 'mail.read mail.send mail.delete');

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
const RESOURCE = `${issuer}/api`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'portcullis',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      // Loopback redirect: any port (RFC 8252 7.3).
      redirect_uris: ['http://127.0.0.1/callback'],
    },
    {
      client_id: 'api',
      client_secret: 'api-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  cookies: { keys: ['portcullis-test-cookie-key'] },
  findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { AccessToken: TTL, AuthorizationCode: 60, Grant: 3600, Interaction: 600, Session: 3600, RefreshToken: 86400 },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== RESOURCE) throw new Error(`unknown resource ${indicator}`);
        return {
          scope: SCOPES,
          audience: RESOURCE,
          accessTokenTTL: TTL,
          accessTokenFormat: 'opaque',
        };
      },
    },
  },
});

// The login and consent screens, answered at once.
provider.use(async (ctx, next) => {
  if (!/^\/interaction\/[^/]+$/.test(ctx.path)) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session, grantId } = details;
  let result;
  if (DENY) {
    result = { error: 'access_denied', error_description: 'alice said no' };
  } else if (prompt.name === 'login') {
    result = { login: { accountId: 'alice' } };
  } else {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    result = { consent: { grantId: await grant.save() } };
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
});

provider.on('grant.success', (ctx) => {
  const body = ctx.body || {};
  console.log(`token ${ctx.oidc.params.grant_type} ${body.scope || ''}`);
});
provider.on('grant.error', (ctx, err) => console.log(`token-error ${ctx.oidc.params.grant_type} ${err.message}`));
provider.on('grant.revoked', () => console.log('revoked grant'));
provider.on('revocation.error', (_ctx, err) => console.log(`revocation-error ${err.message}`));
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

server.on('request', provider.callback());
console.log(`listening ${issuer}`);
