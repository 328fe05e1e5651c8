// A certified OpenID provider (panva/oidc-provider) for l7proxy's sign-in tests.
//
// node server.mjs CONFIG.json — the tests write CONFIG.json:
//   {"host": "127.0.0.1", "port": 0, "cert_file": PEM, "key_file": PEM,
//    "clients": [client metadata...], "accounts": {"alice": ["group", ...]},
//    "client_groups": {"client-id": ["group", ...]}, "audience": "l7proxy"}
// oidc-provider speaks plain HTTP; Node's https module puts it behind TLS, as a real
// deployment's load balancer would. Once listening it prints one JSON line on stdout:
// {"issuer": "https://127.0.0.1:PORT"}.
// GET /test/requests answers how many requests each path has had, so the tests can see that
// a cached token made no request at all.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const RESOURCE = 'urn:l7proxy';
const requests = {};

function newSigningKey(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
}
// The provider signs with the first key; POST /test/rotate puts a new one first.
let signingKeys = [newSigningKey('test-rsa')];

const server = createServer({
  cert: readFileSync(config.cert_file),
  key: readFileSync(config.key_file),
});
server.listen(config.port, config.host, () => {
  const { port } = server.address();
  const issuer = `https://${config.host}:${port}`;
  const makeProvider = (keys) => new Provider(issuer, {
    clients: config.clients,
    jwks: { keys },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    // Any login name signs in (devInteractions asks for one); its groups come from the config.
    async findAccount(_ctx, accountId) {
      return {
        accountId,
        async claims() {
          return { sub: accountId, groups: config.accounts[accountId] ?? [] };
        },
      };
    },
    claims: { openid: ['sub'], groups: ['groups'] },
    // Put the scope's claims (groups) into the ID token itself: the gateway reads them there.
    conformIdTokenClaims: false,
    // The interactive clients get refresh tokens without offline_access (and its consent rule).
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    async extraTokenClaims(_ctx, token) {
      if (token.kind === 'ClientCredentials') {
        return { groups: config.client_groups[token.clientId] ?? [] };
      }
      return undefined;
    },
    features: {
      devInteractions: { enabled: true }, // plain HTML forms the tests submit over HTTP
      deviceFlow: { enabled: true },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Agents (client_credentials) get a JWT access token for the gateway's audience.
        async defaultResource(_ctx, client, oneOf) {
          if (oneOf) return oneOf;
          return client.grantTypeAllowed('client_credentials') ? RESOURCE : undefined;
        },
        async getResourceServerInfo() {
          return {
            scope: 'groups',
            audience: config.audience,
            accessTokenTTL: 3600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
        async useGrantedResource() {
          return true;
        },
      },
    },
  });
  let callback = makeProvider(signingKeys).callback();
  server.on('request', (req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/test/rotate' && req.method === 'POST') {
      // Key rotation at the provider: a new signing key, the old one still published.
      signingKeys = [newSigningKey(`test-rsa-${signingKeys.length + 1}`), ...signingKeys];
      callback = makeProvider(signingKeys).callback();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kid: signingKeys[0].kid }));
      return;
    }
    if (path === '/test/requests') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(requests));
      return;
    }
    requests[path] = (requests[path] ?? 0) + 1;
    callback(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
