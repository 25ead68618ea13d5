// The reference authorization server of credledger's benchmarks: oidc-provider with ONE
// confidential client allowed the client_credentials grant and introspection.
//
// Tokens live in oidc-provider's in-memory adapter (nothing is written to disk), so the peer's
// figures are an upper bound for a server that records nothing durably.
//
// Two resource servers (RFC 8707) decide the access token's format:
//   - the default one gets JWT access tokens signed with EdDSA (Ed25519), like credledger's;
//   - OPAQUE_RESOURCE gets opaque tokens, because oidc-provider refuses to introspect JWT access
//     tokens (a resource server is expected to verify those itself), so its introspection is
//     measured with an opaque token.
//
// Usage: node server.js [PORT]   (default 0: a free port). Prints ONE JSON line with everything
// the load generator needs (URL, client id and secret, endpoint paths), then serves until SIGTERM.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const JWT_RESOURCE = 'urn:credledger-bench:jwt';
const OPAQUE_RESOURCE = 'urn:credledger-bench:opaque';
const SCOPE = 'api:read';
const ACCESS_TOKEN_ALG = 'EdDSA';
const ACCESS_TOKEN_TTL = 900; // 15 minutes, as credledger's

const port = Number.parseInt(process.argv[2] ?? '0', 10);
const clientId = 'credledger-bench';
const clientSecret = randomBytes(32).toString('base64url');

const signingKey = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });

const server = createServer();
server.listen(port, HOST, () => {
  const { port: bound } = server.address();
  const issuer = `http://${HOST}:${bound}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        // The only key is Ed25519: every signature the provider makes must use it.
        id_token_signed_response_alg: ACCESS_TOKEN_ALG,
        scope: SCOPE,
      },
    ],
    scopes: [SCOPE],
    jwks: { keys: [{ ...signingKey, kid: 'bench', alg: ACCESS_TOKEN_ALG, use: 'sig' }] },
    // Set explicitly, as oidc-provider asks: the token lifetime as credledger's, and every
    // authenticated client may introspect (its default for confidential clients).
    ttl: { ClientCredentials: ACCESS_TOKEN_TTL },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true, allowedPolicy: () => true },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => JWT_RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource === OPAQUE_RESOURCE) {
            return { scope: SCOPE, accessTokenFormat: 'opaque', accessTokenTTL: ACCESS_TOKEN_TTL };
          }
          if (resource === JWT_RESOURCE) {
            return {
              scope: SCOPE,
              accessTokenFormat: 'jwt',
              accessTokenTTL: ACCESS_TOKEN_TTL,
              jwt: { sign: { alg: ACCESS_TOKEN_ALG } },
            };
          }
          throw new Provider.errors.InvalidTarget();
        },
      },
    },
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  console.log(
    JSON.stringify({
      url: issuer,
      clientId,
      clientSecret,
      tokenPath: '/token',
      introspectPath: '/token/introspection',
      scope: SCOPE,
      opaqueResource: OPAQUE_RESOURCE,
      accessTokenAlg: ACCESS_TOKEN_ALG,
      tokenStorage: 'in memory (oidc-provider MemoryAdapter)',
      node: process.version,
    }),
  );
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
