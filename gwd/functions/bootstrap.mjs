// gwd's Node.js runtime: runs one Lambda handler file through the Lambda Runtime API.
//
//   node bootstrap.mjs FILE FUNCTION
//
// FILE is a CommonJS (`module.exports.hello = async (event) => ...`) or ES
// module (`export const handler = ...`) file; both load through import().
// Handlers may be async, return a promise, or take AWS's callback as their
// third argument. The process asks AWS_LAMBDA_RUNTIME_API for work until
// that connection fails, which is how it leaves with its gateway.

import http from "node:http";
import { pathToFileURL } from "node:url";

const [file, functionName] = process.argv.slice(2);
const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const base = "/2018-06-01/runtime";

function call(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(body);
    const request = http.request(
      { host, port, method, path, agent, headers: payload ? { ...headers, "Content-Length": payload.length } : headers },
      (response) => {
        const chunks = [];
        response.on("data", (chunk) => chunks.push(chunk));
        response.on("end", () => resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }));
        response.on("error", reject);
      },
    );
    request.on("error", reject);
    request.end(payload);
  });
}

function errorDocument(error) {
  const failure = error instanceof Error ? error : new Error(String(error));
  return JSON.stringify({
    errorType: failure.name || "Error",
    errorMessage: failure.message,
    stackTrace: (failure.stack || "").split("\n").slice(1).map((line) => line.trim()),
  });
}

async function loadHandler() {
  const module = await import(pathToFileURL(file).href);
  const handler = module[functionName] ?? module.default?.[functionName];
  if (typeof handler !== "function") {
    throw new TypeError(`${file} exports no function ${functionName}`);
  }
  return handler;
}

function contextFor(headers) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"]);
  const env = process.env;
  return {
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

function run(handler, event, context) {
  if (handler.length < 3) {
    return Promise.resolve().then(() => handler(event, context));
  }
  return new Promise((resolve, reject) => {
    const returned = handler(event, context, (error, result) => (error ? reject(error) : resolve(result)));
    if (returned && typeof returned.then === "function") {
      returned.then(resolve, reject);
    }
  });
}

async function main() {
  let handler;
  try {
    handler = await loadHandler();
  } catch (error) {
    await call("POST", `${base}/init/error`, errorDocument(error), { "Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError" });
    process.exit(1);
  }
  for (;;) {
    const next = await call("GET", `${base}/invocation/next`);
    const id = next.headers["lambda-runtime-aws-request-id"];
    try {
      const result = await run(handler, JSON.parse(next.body.toString("utf8")), contextFor(next.headers));
      await call("POST", `${base}/invocation/${id}/response`, JSON.stringify(result === undefined ? null : result));
    } catch (error) {
      await call("POST", `${base}/invocation/${id}/error`, errorDocument(error), { "Lambda-Runtime-Function-Error-Type": "Unhandled" });
    }
  }
}

main().catch((error) => {
  console.error(`gwd runtime: ${error.message}`);
  process.exit(1);
});
