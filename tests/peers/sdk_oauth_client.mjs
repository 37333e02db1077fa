// A real MCP client that signs in by itself: the official TypeScript SDK's client with its
// client-credentials OAuth provider. On the gateway's 401 it reads the Protected Resource
// Metadata, the authorization server's metadata, gets a token for the gateway's resource, and
// retries; then it lists tools and calls one. Prints one JSON line with what it saw.
//
//   node sdk_oauth_client.mjs URL ISSUER CLIENT_ID CLIENT_SECRET SCOPE TOOL
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const [url, issuer, clientId, clientSecret, scope, tool] = process.argv.slice(2);
const authProvider = new ClientCredentialsProvider({ clientId, clientSecret, scope, expectedIssuer: issuer });
const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider });
const client = new Client({ name: 'sdk-oauth-client', version: '1.0.0' });
await client.connect(transport);
const { tools } = await client.listTools();
const called = await client.callTool({ name: tool, arguments: { from: 'sdk' } });
console.log(
  JSON.stringify({
    protocolVersion: transport.protocolVersion ?? null,
    tools: tools.map((t) => t.name),
    isError: called.isError ?? false,
    token: authProvider.tokens()?.access_token ? 'obtained' : 'none',
  }),
);
await client.close();
