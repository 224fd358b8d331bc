// Starts oidc-provider on loopback for the identity-provider tests.
//
//   node launcher.mjs --port 9400 --audience acp-demo --key-dir DIR --kids k2,k1 [--claims JSON]
//
// Issuer: http://127.0.0.1:<port>. Signing keys: one RSA key per kid, kept in DIR/<kid>.json
// (generated the first time), all published in the JWKS; the first kid signs. Clients come from
// DIR/clients.json ([{client_id, client_secret, scope}], client_credentials grant only). Access
// tokens are RS256 JWTs for the resource `--audience`; `--claims` adds claims to every one.
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    audience: { type: 'string' },
    'key-dir': { type: 'string' },
    kids: { type: 'string' },
    claims: { type: 'string', default: '{}' },
  },
});

function signingKey(kid) {
  const file = join(args['key-dir'], `${kid}.json`);
  if (!existsSync(file)) {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(file, JSON.stringify({ ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' }));
  }
  return JSON.parse(readFileSync(file, 'utf8'));
}

const issuer = `http://127.0.0.1:${args.port}`;
const extraClaims = JSON.parse(args.claims);
const clients = JSON.parse(readFileSync(join(args['key-dir'], 'clients.json'), 'utf8'));
const scopes = [...new Set(clients.flatMap((c) => c.scope.split(' ')))];

const provider = new Provider(issuer, {
  jwks: { keys: args.kids.split(',').map(signingKey) },
  clients: clients.map((c) => ({
    ...c, grant_types: ['client_credentials'], redirect_uris: [], response_types: [],
  })),
  scopes,
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => args.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== args.audience) throw new Error(`unknown resource ${resource}`);
        return { scope: scopes.join(' '), audience: args.audience, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  extraTokenClaims: () => extraClaims,
});

provider.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`oidc-provider ${issuer} signing with ${args.kids.split(',')[0]}`);
});
