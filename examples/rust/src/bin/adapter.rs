//! refgrad's engine protocol (docs/protocol.md, version 1) for the example engine:
//!
//! ```text
//! python -m refgrad verify --engine-cmd "examples/rust/target/release/adapter"
//! ```
//!
//! It writes the handshake, then answers each request line on stdin with one line on stdout:
//! the output's value, the inputs' gradients and every node's value and gradient. Diagnostics
//! go to stderr; stdout carries nothing but those lines, each flushed as it is written.

use std::io::{self, BufRead, Write};
use std::panic;

use refgrad_example::json::{self, Json};
use refgrad_example::{Graph, NodeId};

const OPS: [&str; 13] =
    ["add", "sub", "mul", "div", "neg", "pow", "vpow", "exp", "log", "tanh", "sigmoid", "relu", "abs"];

fn main() {
    let mut stdout = io::stdout().lock();
    let ops: Vec<String> = OPS.iter().map(|op| format!("\"{op}\"")).collect();
    let handshake = format!(
        "{{\"protocol\": 1, \"engine\": \"refgrad-example-rust\", \"ops\": [{}], \"nodes\": true}}",
        ops.join(", ")
    );
    send(&mut stdout, &handshake);

    let mut input = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return, // end of input: the same as shutdown
            Ok(_) => {}
            Err(error) => fail(&format!("cannot read standard input: {error}")),
        }
        let request = match std::str::from_utf8(&line) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => Json::parse(text).map_err(|error| format!("the line is not JSON: {error}")),
            Err(error) => Err(format!("the line is not UTF-8: {error}")),
        };
        let reply = match request {
            Ok(request) if request.get("shutdown").and_then(Json::as_bool) == Some(true) => return,
            Ok(request) => answer(&request),
            Err(message) => error_answer(None, &Failure::malformed(message)),
        };
        send(&mut stdout, &reply);
    }
}

/// Writes one line and flushes it; a closed stdout means refgrad has gone, so the adapter stops.
fn send(out: &mut impl Write, line: &str) {
    let written = out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n"));
    if let Err(error) = written.and_then(|()| out.flush()) {
        fail(&format!("cannot write standard output: {error}"));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("adapter: {message}");
    std::process::exit(1)
}

/// Why a request got no numbers. None of these is the engine saying "not a finite real":
/// the engine is not strict, it answers such points with NaN or infinities.
struct Failure {
    message: String,
    kind: &'static str,
    /// The node being built, for a failure while building the graph.
    node: Option<usize>,
}

impl Failure {
    fn malformed(message: String) -> Self {
        Failure { message, kind: "MalformedRequest", node: None }
    }

    fn step(message: String, node: usize) -> Self {
        Failure { message, kind: "MalformedStep", node: Some(node) }
    }
}

/// The answer line to one request: its numbers, or an error answer.
fn answer(request: &Json) -> String {
    let Some(id) = request.get("id").and_then(Json::as_i64) else {
        return error_answer(None, &Failure::malformed("the request has no integer \"id\"".into()));
    };
    // A panic is a bug in the engine or here: report it as an error answer and carry on.
    match panic::catch_unwind(|| run(request)) {
        Ok(Ok((graph, nodes, inputs))) => numbers_answer(id, &graph, &nodes, inputs),
        Ok(Err(failure)) => error_answer(Some(id), &failure),
        Err(payload) => {
            let text = payload.downcast_ref::<&str>().map(|s| s.to_string());
            let text = text.or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_default();
            let message = format!("the adapter panicked: {text}");
            error_answer(Some(id), &Failure { message, kind: "panic", node: None })
        }
    }
}

/// Builds the program's nodes in order and runs backward from the last one. Returns the
/// graph, the program's nodes (the engine's constants are not among them) and the input count.
fn run(request: &Json) -> Result<(Graph, Vec<NodeId>, usize), Failure> {
    let field = |name: &str| {
        let found = request.get("program").and_then(|program| program.get(name));
        let list = found.and_then(Json::as_array).filter(|list| !list.is_empty());
        list.ok_or_else(|| Failure::malformed(format!("\"program\" has no non-empty \"{name}\" list")))
    };
    let (inputs, steps) = (field("inputs")?, field("steps")?);
    let mut graph = Graph::new();
    let mut nodes = Vec::with_capacity(inputs.len() + steps.len());
    for x in inputs {
        let x = x.as_f64().ok_or_else(|| Failure::malformed("an input is not a number".into()))?;
        nodes.push(graph.input(x));
    }
    for step in steps {
        let node = build(&mut graph, &nodes, step).map_err(|message| Failure::step(message, nodes.len()))?;
        nodes.push(node);
    }
    graph.backward(nodes[nodes.len() - 1]);
    Ok((graph, nodes, inputs.len()))
}

/// Adds one step's node to the graph.
fn build(graph: &mut Graph, nodes: &[NodeId], step: &Json) -> Result<NodeId, String> {
    let op = step.get("op").and_then(Json::as_str).ok_or("the step has no \"op\" string")?;
    let operands = step.get("operands").and_then(Json::as_array).ok_or("the step has no \"operands\"")?;
    let mut args = Vec::with_capacity(operands.len());
    for operand in operands {
        args.push(match (operand.get("node"), operand.get("const")) {
            (Some(k), None) => {
                let k = k.as_i64().and_then(|k| usize::try_from(k).ok()).filter(|&k| k < nodes.len());
                let earlier = || format!("a \"node\" operand must be one of nodes 0 to {}", nodes.len() - 1);
                nodes[k.ok_or_else(earlier)?]
            }
            (None, Some(c)) => graph.constant(c.as_f64().ok_or("a \"const\" operand is not a number")?),
            _ => return Err("an operand is neither {\"node\": k} nor {\"const\": c}".into()),
        });
    }
    let exponent = || match step.get("params").and_then(Json::as_array) {
        Some([c]) => c.as_f64().ok_or("pow's exponent is not a number"),
        _ => Err("pow takes one parameter, its exponent"),
    };
    Ok(match (op, &args[..]) {
        ("add", &[x, y]) => graph.add(x, y),
        ("sub", &[x, y]) => graph.sub(x, y),
        ("mul", &[x, y]) => graph.mul(x, y),
        ("div", &[x, y]) => graph.div(x, y),
        ("vpow", &[x, y]) => graph.vpow(x, y),
        ("neg", &[x]) => graph.neg(x),
        ("pow", &[x]) => graph.pow(x, exponent()?),
        ("exp", &[x]) => graph.exp(x),
        ("log", &[x]) => graph.log(x),
        ("tanh", &[x]) => graph.tanh(x),
        ("sigmoid", &[x]) => graph.sigmoid(x),
        ("relu", &[x]) => graph.relu(x),
        ("abs", &[x]) => graph.abs(x),
        (op, args) if OPS.contains(&op) => return Err(format!("{op} cannot take {} operand(s)", args.len())),
        (op, _) => return Err(format!("unknown op {op:?}")),
    })
}

fn numbers_answer(id: i64, graph: &Graph, nodes: &[NodeId], inputs: usize) -> String {
    let values: Vec<f64> = nodes.iter().map(|&node| graph.value(node)).collect();
    let grads: Vec<f64> = nodes.iter().map(|&node| graph.grad(node)).collect();
    let mut line = format!("{{\"id\": {id}, \"value\": ");
    json::write_number(&mut line, values[values.len() - 1]);
    line.push_str(", \"gradients\": ");
    json::write_numbers(&mut line, &grads[..inputs]);
    line.push_str(", \"nodes\": {\"values\": ");
    json::write_numbers(&mut line, &values);
    line.push_str(", \"gradients\": ");
    json::write_numbers(&mut line, &grads);
    line.push_str("}}");
    line
}

/// `{"id": ..., "error": {...}}`; the id is `null` when the request had none to repeat.
fn error_answer(id: Option<i64>, failure: &Failure) -> String {
    let id = id.map_or("null".to_string(), |id| id.to_string());
    let mut line = format!("{{\"id\": {id}, \"error\": {{\"message\": ");
    json::write_string(&mut line, &failure.message);
    line.push_str(", \"domain\": false, \"type\": ");
    json::write_string(&mut line, failure.kind);
    if let Some(node) = failure.node {
        line.push_str(&format!(", \"stage\": \"forward\", \"node\": {node}"));
    }
    line.push_str("}}");
    line
}
