// A Node.js handler as an ES module, as AWS's console creates it.
export const handler = async (event) => ({
  statusCode: 200,
  headers: { "Content-Type": "application/json" },
  cookies: ["flavor=esm"],
  body: JSON.stringify({ path: event.rawPath, pid: process.pid }),
});

export function callback(event, context, done) {
  done(null, { statusCode: 200, body: `callback ${context.functionName}` });
}
