// The benchmark's Node.js handler: the same 100-byte JSON body.
const body = `{"message": "hello from a function", "items": [1, 2, 3], "padding": "${"x".repeat(29)}"}`;
export const handler = async () => ({ statusCode: 200, headers: { "Content-Type": "application/json" }, body });
