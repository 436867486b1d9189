// A micrograd-style scalar reverse-mode autograd engine, C++17, std only.
//
// Every node has data, grad, its children (operands) and a backward rule
// (a closure that passes out->grad times each local partial to the children).
// Graph::backward(out) sorts the nodes reachable from `out` topologically
// (iteratively, so deep graphs do not overflow the stack), seeds
// out->grad = 1 and runs the rules from the output down. Nodes the output
// does not depend on are never visited.
//
// Derivative conventions follow PyTorch (see docs/protocol.md, "Ops"). Written from
// docs/protocol.md alone, as a check that the page is enough to write an adapter.
//
// Strict mode (the default): a non-finite value throws DomainError while the
// graph is built; a non-finite gradient of a non-constant node throws
// DomainError from backward(). The engine never hands back a non-finite number.
#pragma once

#include <cmath>
#include <cstddef>
#include <deque>
#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace ag {

struct DomainError : std::domain_error {
  explicit DomainError(const std::string& what) : std::domain_error(what) {}
};

struct Node {
  double data = 0.0;
  double grad = 0.0;
  std::vector<Node*> children;
  std::function<void()> backward_rule;  // empty for leaves
  std::string op;                        // "input", "const" or the op's name
  bool is_const = false;                 // a program constant: no gradient asked
};

class Graph {
 public:
  explicit Graph(bool strict = true) : strict_(strict) {}
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  Node* input(double v) { return make(v, {}, "input"); }
  Node* constant(double v) {
    Node* n = make(v, {}, "const");
    n->is_const = true;
    return n;
  }

  Node* add(Node* lhs, Node* rhs) {
    Node* out = make(lhs->data + rhs->data, {lhs, rhs}, "add");
    out->backward_rule = [lhs, rhs, out]() {
      lhs->grad += out->grad;
      rhs->grad += out->grad;
    };
    return out;
  }

  Node* sub(Node* lhs, Node* rhs) {
    Node* out = make(lhs->data - rhs->data, {lhs, rhs}, "sub");
    out->backward_rule = [lhs, rhs, out]() {
      lhs->grad += out->grad;
      rhs->grad += -out->grad;
    };
    return out;
  }

  Node* mul(Node* lhs, Node* rhs) {
    Node* out = make(lhs->data * rhs->data, {lhs, rhs}, "mul");
    out->backward_rule = [lhs, rhs, out]() {
      lhs->grad += rhs->data * out->grad;
      rhs->grad += lhs->data * out->grad;
    };
    return out;
  }

  Node* div(Node* lhs, Node* rhs) {
    Node* out = make(lhs->data / rhs->data, {lhs, rhs}, "div");
    out->backward_rule = [lhs, rhs, out]() {
      lhs->grad += out->grad / rhs->data;
      // PyTorch: -grad * ((x / y) / y); avoids y*y underflowing to 0.
      rhs->grad += -out->grad * ((lhs->data / rhs->data) / rhs->data);
    };
    return out;
  }

  Node* neg(Node* x) {
    Node* out = make(-x->data, {x}, "neg");
    out->backward_rule = [x, out]() { x->grad += -out->grad; };
    return out;
  }

  // x ** c, c a constant exponent. d/dx = c * x ** (c - 1); 0 when c == 0.
  Node* pow(Node* x, double c) {
    Node* out = make(std::pow(x->data, c), {x}, "pow");
    out->backward_rule = [x, c, out]() {
      if (c == 0.0) return;  // PyTorch: zero, also at x = 0
      x->grad += out->grad * (c * std::pow(x->data, c - 1.0));
    };
    return out;
  }

  // x ** y, y a node (x a node or a constant leaf).
  Node* vpow(Node* x, Node* y) {
    Node* out = make(std::pow(x->data, y->data), {x, y}, "vpow");
    out->backward_rule = [x, y, out]() {
      if (y->data != 0.0)  // PyTorch: d/dx is 0 where y == 0
        x->grad += out->grad * (y->data * std::pow(x->data, y->data - 1.0));
      if (!(x->data == 0.0 && y->data >= 0.0))  // PyTorch: d/dy is 0 there
        y->grad += out->grad * (out->data * std::log(x->data));
    };
    return out;
  }

  Node* exp(Node* x) {
    Node* out = make(std::exp(x->data), {x}, "exp");
    out->backward_rule = [x, out]() { x->grad += out->grad * out->data; };
    return out;
  }

  Node* log(Node* x) {
    Node* out = make(std::log(x->data), {x}, "log");
    out->backward_rule = [x, out]() { x->grad += out->grad / x->data; };
    return out;
  }

  Node* tanh(Node* x) {
    Node* out = make(std::tanh(x->data), {x}, "tanh");
    out->backward_rule = [x, out]() {
      x->grad += out->grad * (1.0 - out->data * out->data);
    };
    return out;
  }

  Node* sigmoid(Node* x) {
    double v;
    if (x->data >= 0.0) {
      v = 1.0 / (1.0 + std::exp(-x->data));
    } else {  // stable: keeps subnormal results for x < -709
      double e = std::exp(x->data);
      v = e / (1.0 + e);
    }
    Node* out = make(v, {x}, "sigmoid");
    out->backward_rule = [x, out]() {
      x->grad += out->grad * ((1.0 - out->data) * out->data);
    };
    return out;
  }

  // relu: derivative 0 at x = 0. PyTorch masks the gradient (threshold_backward),
  // so a non-finite incoming gradient becomes 0 where x <= 0.
  Node* relu(Node* x) {
    Node* out = make(x->data > 0.0 ? x->data : 0.0, {x}, "relu");
    out->backward_rule = [x, out]() {
      if (x->data > 0.0) x->grad += out->grad;
    };
    return out;
  }

  // abs: d/dx = sgn(x), 0 at x = 0 (PyTorch multiplies grad by sgn(x)).
  Node* abs(Node* x) {
    Node* out = make(std::fabs(x->data), {x}, "abs");
    out->backward_rule = [x, out]() {
      double s = x->data > 0.0 ? 1.0 : (x->data < 0.0 ? -1.0 : 0.0);
      x->grad += out->grad * s;
    };
    return out;
  }

  void backward(Node* out) {
    // Iterative post-order DFS from the output: a topological order of the
    // nodes the output depends on, and only those.
    std::vector<Node*> topo;
    std::unordered_set<Node*> visited;
    std::vector<std::pair<Node*, std::size_t>> stack;
    stack.emplace_back(out, 0);
    visited.insert(out);
    while (!stack.empty()) {
      auto& top = stack.back();
      Node* n = top.first;
      if (top.second < n->children.size()) {
        Node* c = n->children[top.second++];
        if (visited.insert(c).second) stack.emplace_back(c, 0);
      } else {
        topo.push_back(n);
        stack.pop_back();
      }
    }
    for (auto& n : nodes_) n.grad = 0.0;
    out->grad = 1.0;
    for (auto it = topo.rbegin(); it != topo.rend(); ++it)
      if ((*it)->backward_rule) (*it)->backward_rule();
    if (strict_) {
      for (auto& n : nodes_)
        if (!n.is_const && !std::isfinite(n.grad))
          throw DomainError("gradient not finite at a " + n.op + " node");
    }
  }

 private:
  Node* make(double data, std::vector<Node*> children, const char* op) {
    if (strict_ && !std::isfinite(data))
      throw DomainError(std::string(op) + ": result is not a finite real number");
    nodes_.emplace_back();
    Node* n = &nodes_.back();
    n->data = data;
    n->children = std::move(children);
    n->op = op;
    return n;
  }

  bool strict_;
  std::deque<Node> nodes_;  // owns every node; deque keeps pointers stable
};

}  // namespace ag
