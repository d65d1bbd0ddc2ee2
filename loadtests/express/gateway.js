// The Express reference gateway: one worker per requested process, each
// proxying every path to the backend with keep-alive upstream connections.
// Usage: node gateway.js PORT BACKEND_URL WORKERS
const cluster = require("node:cluster");
const http = require("node:http");

const [port, backend, workers] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4] || 2)];

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  let ready = 0;
  cluster.on("listening", () => {
    if (++ready === workers) console.log("ready");
  });
  process.on("SIGTERM", () => {
    for (const worker of Object.values(cluster.workers)) worker.kill();
    process.exit(0);
  });
} else {
  const express = require("express");
  const { createProxyMiddleware } = require("http-proxy-middleware");
  const app = express();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  app.use(createProxyMiddleware({ target: backend, agent, changeOrigin: true }));
  app.listen(port, "127.0.0.1");
}
