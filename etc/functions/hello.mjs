// A Node.js handler as AWS's console writes it; gwd runs it with its bootstrap and the system's node.
export const handler = async (event) => ({
  statusCode: 200,
  body: JSON.stringify({ message: `Hello from Node.js ${process.version}`, path: event.rawPath }),
});
