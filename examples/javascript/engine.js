'use strict';
// A small scalar reverse-mode autograd engine, in the micrograd style.
//
// Every Value holds a number (`data`), the derivative of the output with respect to it
// (`grad`, filled in by `backward()`), the Values it was computed from (`children`) and a
// `_backward` closure that passes its `grad` on to those children by the chain rule.
//
// The engine is not strict: it computes with JavaScript's own numbers and Math functions,
// so outside an op's domain (the log of a negative number, an exp that overflows, 1 / 0)
// a result is NaN or an infinity, and it flows on through the nodes that use it.
// At the points where an op has no derivative it follows PyTorch: relu'(0) = 0,
// abs'(0) = 0, d/dx x ** 0 = 0, and d/dy x ** y = 0 at x = 0 for y >= 0.
//
// Each partial derivative is one line of the form `operand.grad += partial * out.grad`:
// `+=`, so a node that is read twice (x * x, or by two later nodes) gets both shares.

class Value {
  constructor(data, children = [], op = '') {
    this.data = data;
    this.grad = 0;
    this.children = children;
    this.op = op; // the op that made this node ('' for a leaf), for reading and debugging
    this._backward = () => {}; // a leaf has nothing to pass on
  }

  // A Value as it is, or a number as a new constant leaf.
  static lift(x) {
    return x instanceof Value ? x : new Value(x);
  }

  add(other) {
    const x = this, y = Value.lift(other);
    const out = new Value(x.data + y.data, [x, y], 'add');
    out._backward = () => {
      x.grad += out.grad;
      y.grad += out.grad;
    };
    return out;
  }

  sub(other) {
    const x = this, y = Value.lift(other);
    const out = new Value(x.data - y.data, [x, y], 'sub');
    out._backward = () => {
      x.grad += out.grad;
      y.grad -= out.grad;
    };
    return out;
  }

  mul(other) {
    const x = this, y = Value.lift(other);
    const out = new Value(x.data * y.data, [x, y], 'mul');
    out._backward = () => {
      x.grad += y.data * out.grad;
      y.grad += x.data * out.grad;
    };
    return out;
  }

  div(other) {
    const x = this, y = Value.lift(other);
    const out = new Value(x.data / y.data, [x, y], 'div');
    out._backward = () => {
      x.grad += out.grad / y.data;
      y.grad -= (out.data / y.data) * out.grad; // -x / y**2, as -(x / y) / y: y**2 alone cannot overflow
    };
    return out;
  }

  neg() {
    const x = this;
    const out = new Value(-x.data, [x], 'neg');
    out._backward = () => {
      x.grad -= out.grad;
    };
    return out;
  }

  // x ** c for a plain number c (NaN for x < 0 and a fractional c).
  pow(c) {
    const x = this;
    const out = new Value(x.data ** c, [x], 'pow');
    out._backward = () => {
      x.grad += (c === 0 ? 0 : c * x.data ** (c - 1)) * out.grad;
    };
    return out;
  }

  // x ** y with a node (or a number, lifted) as the exponent.
  vpow(other) {
    const x = this, y = Value.lift(other);
    const out = new Value(x.data ** y.data, [x, y], 'vpow');
    out._backward = () => {
      x.grad += (y.data === 0 ? 0 : y.data * x.data ** (y.data - 1)) * out.grad;
      y.grad += (x.data === 0 && y.data >= 0 ? 0 : Math.log(x.data) * out.data) * out.grad;
    };
    return out;
  }

  exp() {
    const x = this;
    const out = new Value(Math.exp(x.data), [x], 'exp');
    out._backward = () => {
      x.grad += out.data * out.grad;
    };
    return out;
  }

  log() {
    const x = this;
    const out = new Value(Math.log(x.data), [x], 'log');
    out._backward = () => {
      x.grad += out.grad / x.data;
    };
    return out;
  }

  tanh() {
    const x = this;
    const out = new Value(Math.tanh(x.data), [x], 'tanh');
    out._backward = () => {
      x.grad += (1 - out.data * out.data) * out.grad;
    };
    return out;
  }

  // 1 / (1 + e ** -x), computed so that Math.exp only sees a number <= 0: it cannot overflow,
  // and far below 0 the result is the tiny (even subnormal) number it should be, not 0.
  sigmoid() {
    const x = this;
    const e = Math.exp(-Math.abs(x.data));
    const out = new Value(x.data >= 0 ? 1 / (1 + e) : e / (1 + e), [x], 'sigmoid');
    out._backward = () => {
      x.grad += out.data * (1 - out.data) * out.grad;
    };
    return out;
  }

  relu() {
    const x = this;
    const out = new Value(Math.max(0, x.data), [x], 'relu'); // Math.max: relu(-0) is 0, relu(NaN) NaN
    out._backward = () => {
      x.grad += (x.data > 0 ? 1 : 0) * out.grad;
    };
    return out;
  }

  abs() {
    const x = this;
    const out = new Value(Math.abs(x.data), [x], 'abs');
    out._backward = () => {
      x.grad += Math.sign(x.data) * out.grad; // Math.sign(0) is 0: abs'(0) = 0
    };
    return out;
  }

  // Fills in `grad` for this node (1) and every node it depends on (d this / d node).
  // Nodes it does not depend on are left alone (grad 0 on a fresh graph).
  backward() {
    // Topological order: each node after all its children. A depth-first search with an
    // explicit stack rather than recursion, so a chain of many thousand nodes is fine.
    const order = [];
    const seen = new Set([this]);
    const stack = [{ node: this, next: 0 }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (top.next < top.node.children.length) {
        const child = top.node.children[top.next++];
        if (!seen.has(child)) {
          seen.add(child);
          stack.push({ node: child, next: 0 });
        }
      } else {
        order.push(top.node);
        stack.pop();
      }
    }
    // The chain rule, from the output back: a node's grad is complete before it passes it on.
    this.grad = 1;
    for (let i = order.length - 1; i >= 0; i--) {
      order[i]._backward();
    }
  }
}

module.exports = { Value };
