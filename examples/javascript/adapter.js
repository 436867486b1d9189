'use strict';
// refgrad's engine protocol (docs/protocol.md, version 1) for the engine in engine.js:
//
//   python -m refgrad verify --engine-cmd "node examples/javascript/adapter.js"
//
// It writes the handshake, then answers each request line on stdin with one line on stdout:
// the output's value, the inputs' gradients and every node's value and gradient. Standard
// output carries nothing else; each line is handed to the pipe as soon as it is written.
const path = require('path');
const readline = require('readline');
const { Value } = require(path.join(__dirname, 'engine.js')); // the engine beside this file

const OPS = ['add', 'sub', 'mul', 'div', 'neg', 'pow', 'vpow', 'exp', 'log', 'tanh', 'sigmoid', 'relu', 'abs'];
const BINARY = ['add', 'sub', 'mul', 'div', 'vpow']; // the others take one operand

// A number as the protocol writes it: round-trip exact, -0.0 with its sign, non-finite as a string.
const num = (x) => (Object.is(x, -0) ? '-0.0' : Number.isFinite(x) ? JSON.stringify(x) : `"${x}"`);
const nums = (xs) => `[${xs.map(num).join(',')}]`;
const send = (line) => process.stdout.write(line + '\n');

// The answer line to one request: build a fresh graph step by step, run backward, report.
function answer(request) {
  let nodes = [], stage = 'forward';
  const { inputs, steps } = request.program;
  try {
    nodes = inputs.map((x) => new Value(x));
    for (const { op, operands, params } of steps) {
      if (!OPS.includes(op)) throw new Error(`unknown op ${JSON.stringify(op)}`);
      if (operands.length !== (BINARY.includes(op) ? 2 : 1)) throw new Error(`${op} with ${operands.length} operands`);
      const [x, ...rest] = operands.map((o) => ('node' in o ? nodes[o.node] : Value.lift(o.const)));
      nodes.push(op === 'pow' ? x.pow(params[0]) : x[op](...rest)); // a constant first operand is a leaf
    }
    stage = 'backward';
    nodes[nodes.length - 1].backward();
  } catch (error) {
    // The engine never throws for a domain error (it answers NaN or an infinity): this is a bug.
    const where = stage === 'forward' && nodes.length >= inputs.length ? { node: nodes.length } : {};
    const message = error instanceof Error ? error.message : String(error);
    const type = error instanceof Error ? error.name : typeof error;
    return JSON.stringify({ id: request.id, error: { message, domain: false, stage, type, ...where } });
  }
  const values = nodes.map((n) => n.data), grads = nodes.map((n) => n.grad);
  return `{"id":${JSON.stringify(request.id)},"value":${num(values[values.length - 1])},` +
    `"gradients":${nums(grads.slice(0, inputs.length))},"nodes":{"values":${nums(values)},"gradients":${nums(grads)}}}`;
}

async function main() {
  send(JSON.stringify({ protocol: 1, engine: 'refgrad-example-js', ops: OPS, nodes: true }));
  for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (line.trim() === '') continue;
    let request = null;
    try {
      request = JSON.parse(line);
      if (request.shutdown) break;
      send(answer(request));
    } catch (error) { // not JSON, or not a request: say so, with the id if there was one
      send(JSON.stringify({ id: request?.id ?? null, error: { message: String(error), domain: false } }));
    }
  }
  // Shutdown or end of input: stop reading (stdin may still be open), and let Node exit by
  // itself, status 0, once stdout has drained. No process.exit(): it could drop answers.
  process.stdin.destroy();
}

main();
