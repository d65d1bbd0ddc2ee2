// A Node.js handler in CommonJS, as the Serverless Framework's template writes it.
module.exports.hello = async (event, context) => {
  console.log(`greeting ${event.rawPath}`);
  return {
    statusCode: 200,
    body: JSON.stringify({ message: "Go Serverless!", input: event, requestId: context.awsRequestId }),
  };
};

module.exports.fails = async () => {
  throw new TypeError("the node handler broke");
};

module.exports.crashes = async () => {
  process.exit(3);
};

module.exports.slow = async (event) => {
  const seconds = Number((event.queryStringParameters || {}).seconds || "0");
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return { statusCode: 200, body: `slept ${seconds}` };
};
