// An MCP client built on the official TypeScript SDK, driven by the end-to-end tests:
//
//   node client.mjs <scenario> <mcp url> [json arguments]
//
// The bearer token comes from ACP_TOKEN. Prints one JSON object on stdout: what the SDK saw.
//
//   session      initialize, tools/list, the `allowed` and `denied` tool calls, a call whose
//                answer streams progress notifications, then closes the session (DELETE).
//                args: {"allowed": [name, arguments], "denied": [name, arguments],
//                       "progress": [name, arguments]}
//   oauth        the SDK with an OAuth provider: a 401 (no token) or a 403 insufficient_scope
//                (the token lacks the scope of `denied`) sends it through discovery to the
//                authorization server, whose authorization URL is captured.
//                args: {"denied": [name, arguments]} (optional)

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [scenario, url, rawArgs] = process.argv.slice(2);
const args = rawArgs ? JSON.parse(rawArgs) : {};
const token = process.env.ACP_TOKEN || undefined;

function describe(error) {
  return { name: error?.constructor?.name, code: error?.code, message: String(error?.message ?? error) };
}

async function callTool(client, [name, toolArgs], options) {
  try {
    const result = await client.callTool({ name, arguments: toolArgs }, undefined, options);
    return { result };
  } catch (error) {
    return { error: describe(error) };
  }
}

async function session() {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: token ? { Authorization: `Bearer ${token}` } : {} },
  });
  const client = new Client({ name: "acp-interop-ts", version: "1.0.0" });
  const out = {};
  await client.connect(transport);
  out.sessionId = transport.sessionId;
  out.protocolVersion = transport.protocolVersion;
  out.serverInfo = client.getServerVersion();
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  out.allowed = await callTool(client, args.allowed);
  out.denied = await callTool(client, args.denied);
  if (args.progress) {
    const progress = [];
    out.progress = await callTool(client, args.progress, { onprogress: (p) => progress.push(p.progress) });
    out.progress.notifications = progress;
  }
  out.sameSession = transport.sessionId === out.sessionId;
  await transport.terminateSession();
  out.terminated = transport.sessionId === undefined;
  await client.close();
  return out;
}

/** An OAuth client provider that holds a pre-registered client and the given token, and
 * records where the SDK would send the user to authorize. */
class RecordingProvider {
  constructor(accessToken) {
    this.accessToken = accessToken;
    this.redirects = [];
  }
  get redirectUrl() { return "http://127.0.0.1/callback"; }
  get clientMetadata() { return { client_name: "acp-interop-ts", redirect_uris: [this.redirectUrl] }; }
  clientInformation() { return { client_id: "acp-interop-ts" }; }
  tokens() { return this.accessToken ? { access_token: this.accessToken, token_type: "Bearer" } : undefined; }
  saveTokens() {}
  redirectToAuthorization(authorizationUrl) { this.redirects.push(authorizationUrl.toString()); }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
}

async function oauth() {
  const provider = new RecordingProvider(token);
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  const client = new Client({ name: "acp-interop-ts", version: "1.0.0" });
  const out = {};
  try {
    await client.connect(transport);
    out.connected = true;
    if (args.denied) out.denied = await callTool(client, args.denied);
  } catch (error) {
    out.error = describe(error);
  }
  out.redirects = provider.redirects;
  await client.close();
  return out;
}

const scenarios = { session, oauth };
const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario ${scenario}; one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
process.stdout.write(JSON.stringify(await run()) + "\n");
