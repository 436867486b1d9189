//! The engine: a tape of scalar nodes and one backward sweep over it.
//!
//! A [`Graph`] owns its nodes in a `Vec`, in the order they were made, and a [`NodeId`] is an
//! index into it. An op can only read nodes that already exist, so every node's operands sit
//! at smaller indices than the node itself: creation order is a topological order, and the
//! backward pass is a single walk down the tape from the output, with no search and no recursion.
//!
//! The engine is not strict: it computes with plain `f64` arithmetic, so a result outside an
//! op's domain (the log of a negative number, an `exp` that overflows, `1 / 0`) comes out as
//! NaN or an infinity and flows on through the nodes that use it.

/// A node of a [`Graph`]: its position on the tape (inputs first, in creation order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(usize);

impl NodeId {
    /// The node's position in its graph (0 for the first node made).
    pub fn index(self) -> usize {
        self.0
    }
}

/// How a node was made: a leaf, or an op with the nodes it reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// A leaf whose gradient is wanted.
    Input,
    /// A leaf holding a fixed number; its gradient is computed like any other, and ignored.
    Constant,
    /// `x + y`
    Add(NodeId, NodeId),
    /// `x - y`
    Sub(NodeId, NodeId),
    /// `x * y`
    Mul(NodeId, NodeId),
    /// `x / y` (IEEE division: `1 / -0.0` is `-inf`)
    Div(NodeId, NodeId),
    /// `-x`
    Neg(NodeId),
    /// `x ** c` for a fixed number `c`
    Pow(NodeId, f64),
    /// `x ** y` with a node `y` as the exponent
    VPow(NodeId, NodeId),
    /// `e ** x`
    Exp(NodeId),
    /// the natural logarithm
    Log(NodeId),
    /// `tanh(x)`
    Tanh(NodeId),
    /// `1 / (1 + e ** -x)`
    Sigmoid(NodeId),
    /// `max(0, x)`
    Relu(NodeId),
    /// `|x|`
    Abs(NodeId),
}

impl Op {
    /// The nodes the op reads, in order (both `None` for a leaf, the second `None` for a unary op).
    pub fn operands(&self) -> [Option<NodeId>; 2] {
        use Op::*;
        match *self {
            Input | Constant => [None, None],
            Add(x, y) | Sub(x, y) | Mul(x, y) | Div(x, y) | VPow(x, y) => [Some(x), Some(y)],
            Neg(x) | Pow(x, _) | Exp(x) | Log(x) | Tanh(x) | Sigmoid(x) | Relu(x) | Abs(x) => [Some(x), None],
        }
    }
}

#[derive(Clone, Debug)]
struct Node {
    value: f64,
    grad: f64,
    op: Op,
}

/// A tape of scalar nodes.
///
/// ```
/// use refgrad_example::Graph;
///
/// let mut g = Graph::new();
/// let x = g.input(2.0);
/// let y = g.input(-3.0);
/// let xy = g.mul(x, y);
/// let c = g.constant(1.5);
/// let out = g.add(xy, c);
/// g.backward(out);
/// assert_eq!((g.value(out), g.grad(x), g.grad(y)), (-4.5, -3.0, 2.0));
/// ```
///
/// Every method taking a [`NodeId`] panics if the id is not one of this graph's nodes.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many nodes the graph holds, constants included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes yet.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node's value.
    pub fn value(&self, id: NodeId) -> f64 {
        self.nodes[id.0].value
    }

    /// `d output / d node`, summed over every [`backward`](Graph::backward) since it was made
    /// (or since [`zero_grad`](Graph::zero_grad)); 0 until then.
    pub fn grad(&self, id: NodeId) -> f64 {
        self.nodes[id.0].grad
    }

    /// How the node was made.
    pub fn op(&self, id: NodeId) -> Op {
        self.nodes[id.0].op
    }

    /// A new leaf whose gradient is wanted.
    pub fn input(&mut self, value: f64) -> NodeId {
        self.push(value, Op::Input)
    }

    /// A new leaf holding a fixed number.
    pub fn constant(&mut self, value: f64) -> NodeId {
        self.push(value, Op::Constant)
    }

    pub fn add(&mut self, x: NodeId, y: NodeId) -> NodeId {
        self.push(self.value(x) + self.value(y), Op::Add(x, y))
    }

    pub fn sub(&mut self, x: NodeId, y: NodeId) -> NodeId {
        self.push(self.value(x) - self.value(y), Op::Sub(x, y))
    }

    pub fn mul(&mut self, x: NodeId, y: NodeId) -> NodeId {
        self.push(self.value(x) * self.value(y), Op::Mul(x, y))
    }

    pub fn div(&mut self, x: NodeId, y: NodeId) -> NodeId {
        self.push(self.value(x) / self.value(y), Op::Div(x, y))
    }

    pub fn neg(&mut self, x: NodeId) -> NodeId {
        self.push(-self.value(x), Op::Neg(x))
    }

    /// `x ** c`: NaN for a negative `x` and a fractional `c`, infinite at `x = 0` for `c < 0`.
    pub fn pow(&mut self, x: NodeId, c: f64) -> NodeId {
        self.push(self.value(x).powf(c), Op::Pow(x, c))
    }

    /// `x ** y` with the exponent a node too.
    pub fn vpow(&mut self, x: NodeId, y: NodeId) -> NodeId {
        self.push(self.value(x).powf(self.value(y)), Op::VPow(x, y))
    }

    pub fn exp(&mut self, x: NodeId) -> NodeId {
        self.push(self.value(x).exp(), Op::Exp(x))
    }

    /// The natural logarithm: `-inf` at 0, NaN below.
    pub fn log(&mut self, x: NodeId) -> NodeId {
        self.push(self.value(x).ln(), Op::Log(x))
    }

    pub fn tanh(&mut self, x: NodeId) -> NodeId {
        self.push(self.value(x).tanh(), Op::Tanh(x))
    }

    pub fn sigmoid(&mut self, x: NodeId) -> NodeId {
        self.push(sigmoid(self.value(x)), Op::Sigmoid(x))
    }

    /// `max(0, x)` (NaN stays NaN).
    pub fn relu(&mut self, x: NodeId) -> NodeId {
        let v = self.value(x);
        self.push(if v <= 0.0 { 0.0 } else { v }, Op::Relu(x))
    }

    pub fn abs(&mut self, x: NodeId) -> NodeId {
        self.push(self.value(x).abs(), Op::Abs(x))
    }

    fn push(&mut self, value: f64, op: Op) -> NodeId {
        self.nodes.push(Node { value, grad: 0.0, op });
        NodeId(self.nodes.len() - 1)
    }

    /// Sets every node's gradient back to 0.
    pub fn zero_grad(&mut self) {
        for node in &mut self.nodes {
            node.grad = 0.0;
        }
    }

    /// Adds `d output / d node` to the gradient of every node `output` depends on (itself
    /// included, with 1). The nodes it does not depend on are left alone.
    ///
    /// Each edge adds its share, so a node read twice (`x * x`, or by two later nodes) gets
    /// both. This pass's shares are summed apart from the gradients already stored, so a
    /// second call adds the same amounts again, as PyTorch's `backward()` does.
    pub fn backward(&mut self, output: NodeId) {
        let top = output.0;
        // adjoint[i]: d output / d node i in this pass; reached[i]: output depends on node i.
        let mut adjoint = vec![0.0; top + 1];
        let mut reached = vec![false; top + 1];
        adjoint[top] = 1.0;
        reached[top] = true;
        for i in (0..=top).rev() {
            if !reached[i] {
                continue; // nothing flows back through a node the output does not use
            }
            let op = self.nodes[i].op;
            for operand in op.operands().into_iter().flatten() {
                reached[operand.0] = true;
            }
            let g = adjoint[i];
            let out = self.nodes[i].value;
            let v = |id: NodeId| self.nodes[id.0].value;
            // One line per partial derivative: adjoint[operand] += g * (d node / d operand).
            match op {
                Op::Input | Op::Constant => {}
                Op::Add(x, y) => {
                    adjoint[x.0] += g;
                    adjoint[y.0] += g;
                }
                Op::Sub(x, y) => {
                    adjoint[x.0] += g;
                    adjoint[y.0] -= g;
                }
                Op::Mul(x, y) => {
                    adjoint[x.0] += g * v(y);
                    adjoint[y.0] += g * v(x);
                }
                Op::Div(x, y) => {
                    adjoint[x.0] += g / v(y);
                    // -x / y^2, written as -(x / y) / y so that y^2 cannot overflow on its own
                    adjoint[y.0] += g * (-out / v(y));
                }
                Op::Neg(x) => {
                    adjoint[x.0] -= g;
                }
                Op::Pow(x, c) => {
                    // c * x^(c - 1), and 0 for c = 0 even at x = 0 (PyTorch)
                    adjoint[x.0] += g * (if c == 0.0 { 0.0 } else { c * v(x).powf(c - 1.0) });
                }
                Op::VPow(x, y) => {
                    let (b, p) = (v(x), v(y));
                    // d/dx = y * x^(y - 1), 0 at y = 0; d/dy = ln(x) * x^y, 0 at x = 0 with y >= 0
                    // (PyTorch's conventions; a negative base gives a NaN d/dy)
                    adjoint[x.0] += g * (if p == 0.0 { 0.0 } else { p * b.powf(p - 1.0) });
                    adjoint[y.0] += g * (if b == 0.0 && p >= 0.0 { 0.0 } else { b.ln() * out });
                }
                Op::Exp(x) => {
                    adjoint[x.0] += g * out;
                }
                Op::Log(x) => {
                    adjoint[x.0] += g / v(x);
                }
                Op::Tanh(x) => {
                    adjoint[x.0] += g * (1.0 - out * out);
                }
                Op::Sigmoid(x) => {
                    adjoint[x.0] += g * (out * (1.0 - out));
                }
                Op::Relu(x) => {
                    // relu'(0) = 0 (PyTorch)
                    adjoint[x.0] += g * (if v(x) > 0.0 { 1.0 } else { 0.0 });
                }
                Op::Abs(x) => {
                    // sign(x), with abs'(0) = 0 (PyTorch)
                    adjoint[x.0] += g * (if v(x) == 0.0 { 0.0 } else { v(x).signum() });
                }
            }
        }
        for (node, (share, used)) in self.nodes.iter_mut().zip(adjoint.into_iter().zip(reached)) {
            if used {
                node.grad += share;
            }
        }
    }
}

/// `1 / (1 + e^-x)`, evaluated so that `exp` only ever sees a non-positive number: no overflow,
/// and `sigmoid(-740)` is the subnormal it should be rather than 0.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grads(g: &Graph, ids: &[NodeId]) -> Vec<f64> {
        ids.iter().map(|&id| g.grad(id)).collect()
    }

    #[test]
    fn product_plus_constant() {
        let mut g = Graph::new();
        let (x, y) = (g.input(2.0), g.input(-3.0));
        let xy = g.mul(x, y);
        let c = g.constant(1.5);
        let out = g.add(xy, c);
        g.backward(out);
        assert_eq!(g.value(out), -4.5);
        assert_eq!(grads(&g, &[x, y, xy, out]), [-3.0, 2.0, 1.0, 1.0]);
    }

    #[test]
    fn a_node_read_twice_gets_both_shares() {
        let mut g = Graph::new();
        let x = g.input(3.0);
        let sq = g.mul(x, x);
        let out = g.add(sq, x);
        g.backward(out);
        assert_eq!(g.grad(x), 7.0);
    }

    #[test]
    fn a_second_backward_adds_the_same_again() {
        let mut g = Graph::new();
        let x = g.input(3.0);
        let t = g.tanh(x);
        let out = g.mul(t, t);
        g.backward(out);
        let once = g.grad(x);
        g.backward(out);
        assert_eq!(g.grad(x), 2.0 * once);
    }

    #[test]
    fn unused_nodes_pass_nothing_back() {
        let mut g = Graph::new();
        let (x, y) = (g.input(0.0), g.input(1.0));
        let _unused = g.log(x); // its partial 1 / x is infinite
        let out = g.exp(y);
        g.backward(out);
        assert_eq!(grads(&g, &[x, y]), [0.0, 1.0_f64.exp()]);
    }

    #[test]
    fn conventions_at_kinks() {
        let mut g = Graph::new();
        let z = g.input(0.0);
        let r = g.relu(z);
        let a = g.abs(z);
        let out = g.add(r, a);
        g.backward(out);
        assert_eq!(g.grad(z), 0.0);

        let mut g = Graph::new();
        let (x, y) = (g.input(0.0), g.input(2.0));
        let out = g.vpow(x, y);
        g.backward(out);
        assert_eq!(grads(&g, &[x, y]), [0.0, 0.0]);

        let mut g = Graph::new();
        let x = g.input(0.0);
        let out = g.pow(x, 0.0);
        g.backward(out);
        assert_eq!((g.value(out), g.grad(x)), (1.0, 0.0));
    }

    #[test]
    fn out_of_domain_is_nan_or_infinite() {
        let mut g = Graph::new();
        let x = g.input(-1.0);
        let out = g.log(x);
        g.backward(out);
        assert!(g.value(out).is_nan());
        let big = g.input(1000.0);
        let e = g.exp(big);
        assert_eq!(g.value(e), f64::INFINITY);
    }

    #[test]
    fn sigmoid_is_stable_far_out() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!(sigmoid(-740.0) > 0.0);
    }
}
