// refgrad protocol (version 1) adapter for the engine in autograd.hpp.
// One JSON object per line on stdin/stdout; diagnostics go to stderr.
#include "autograd.hpp"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace {

// ---------------------------------------------------------------- JSON value
struct Json {
  enum Type { Null, Bool, Num, Str, Arr, Obj } type = Null;
  bool b = false;
  double num = 0.0;
  std::string str;  // string contents, or a number's text as written
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;

  const Json* get(const std::string& key) const {
    if (type != Obj) return nullptr;
    for (const auto& kv : obj)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
};

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  Json parse_document() {
    Json v = value();
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const char* what) {
    throw ParseError(std::string("bad JSON: ") + what + " at " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n')) ++i_;
  }
  bool lit(const char* w) {
    std::size_t n = std::char_traits<char>::length(w);
    if (s_.compare(i_, n, w) == 0) { i_ += n; return true; }
    return false;
  }
  Json value() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    char c = s_[i_];
    if (c == '{') {
      v.type = Json::Obj;
      ++i_; ws();
      if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
      for (;;) {
        ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a key");
        std::string k = string();
        ws();
        if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':'");
        ++i_;
        v.obj.emplace_back(std::move(k), value());
        ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.type = Json::Arr;
      ++i_; ws();
      if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
      for (;;) {
        v.arr.push_back(value());
        ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') { v.type = Json::Str; v.str = string(); return v; }
    if (lit("true")) { v.type = Json::Bool; v.b = true; return v; }
    if (lit("false")) { v.type = Json::Bool; return v; }
    if (lit("null")) return v;
    if (lit("NaN")) { v.type = Json::Num; v.num = NAN; v.str = "NaN"; return v; }
    if (lit("Infinity")) { v.type = Json::Num; v.num = INFINITY; v.str = "Infinity"; return v; }
    if (lit("-Infinity")) { v.type = Json::Num; v.num = -INFINITY; v.str = "-Infinity"; return v; }
    return number();
  }
  Json number() {
    std::size_t start = i_;
    while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' ||
                              s_[i_] == '+' || s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E'))
      ++i_;
    if (i_ == start) fail("unexpected character");
    Json v;
    v.type = Json::Num;
    v.str = s_.substr(start, i_ - start);
    errno = 0;
    char* end = nullptr;
    v.num = std::strtod(v.str.c_str(), &end);  // correctly rounded; ERANGE on subnormals is fine
    if (end != v.str.c_str() + v.str.size()) fail("bad number");
    return v;
  }
  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) out += static_cast<char>(cp);
    else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("short \\u escape");
    unsigned cp = 0;
    for (int k = 0; k < 4; ++k) {
      char h = s_[i_++];
      cp <<= 4;
      if (h >= '0' && h <= '9') cp |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') cp |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') cp |= static_cast<unsigned>(h - 'A' + 10);
      else fail("bad \\u escape");
    }
    return cp;
  }
  std::string string() {
    ++i_;  // opening quote
    std::string out;
    while (i_ < s_.size()) {
      char c = s_[i_++];
      if (c == '"') return out;
      if (c != '\\') { out += c; continue; }
      if (i_ >= s_.size()) break;
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {
            i_ += 2;
            unsigned lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
    fail("unterminated string");
  }

  const std::string& s_;
  std::size_t i_ = 0;
};

// ---------------------------------------------------------------- JSON output
void put_number(std::string& out, double x) {
  if (std::isnan(x)) { out += "\"NaN\""; return; }
  if (std::isinf(x)) { out += x > 0 ? "\"Infinity\"" : "\"-Infinity\""; return; }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);  // shortest round-trip text; keeps "-0"
  out.append(buf, r.ptr);
}

void put_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void put_numbers(std::string& out, const std::vector<double>& xs) {
  out += '[';
  for (std::size_t k = 0; k < xs.size(); ++k) {
    if (k) out += ", ";
    put_number(out, xs[k]);
  }
  out += ']';
}

void emit(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// ---------------------------------------------------------------- programs
struct RequestError : std::runtime_error {  // a malformed request
  using std::runtime_error::runtime_error;
};

const Json& need(const Json& o, const char* key, Json::Type t) {
  const Json* v = o.get(key);
  if (!v || v->type != t) throw RequestError(std::string("missing or malformed field '") + key + "'");
  return *v;
}

const char* const kOps[] = {"add", "sub", "mul", "div", "neg", "pow", "vpow",
                            "exp", "log", "tanh", "sigmoid", "relu", "abs"};

ag::Node* apply(ag::Graph& g, const std::string& op, const std::vector<ag::Node*>& a,
                const Json& params) {
  auto arity = [&](std::size_t n) {
    if (a.size() != n) throw RequestError(op + " takes " + std::to_string(n) + " operand(s)");
  };
  if (op == "add") { arity(2); return g.add(a[0], a[1]); }
  if (op == "sub") { arity(2); return g.sub(a[0], a[1]); }
  if (op == "mul") { arity(2); return g.mul(a[0], a[1]); }
  if (op == "div") { arity(2); return g.div(a[0], a[1]); }
  if (op == "vpow") { arity(2); return g.vpow(a[0], a[1]); }
  if (op == "neg") { arity(1); return g.neg(a[0]); }
  if (op == "exp") { arity(1); return g.exp(a[0]); }
  if (op == "log") { arity(1); return g.log(a[0]); }
  if (op == "tanh") { arity(1); return g.tanh(a[0]); }
  if (op == "sigmoid") { arity(1); return g.sigmoid(a[0]); }
  if (op == "relu") { arity(1); return g.relu(a[0]); }
  if (op == "abs") { arity(1); return g.abs(a[0]); }
  if (op == "pow") {
    arity(1);
    if (params.type != Json::Arr || params.arr.size() != 1 || params.arr[0].type != Json::Num)
      throw RequestError("pow needs params [exponent]");
    return g.pow(a[0], params.arr[0].num);
  }
  throw RequestError("unknown op '" + op + "'");
}

std::string error_answer(const std::string& id, const std::string& message, bool domain,
                         const char* stage, long node, const char* type) {
  std::string out = "{\"id\": " + id + ", \"error\": {\"message\": ";
  put_string(out, message);
  out += domain ? ", \"domain\": true" : ", \"domain\": false";
  out += ", \"stage\": \"";
  out += stage;
  out += '"';
  if (node >= 0) out += ", \"node\": " + std::to_string(node);
  out += ", \"type\": ";
  put_string(out, type);
  out += "}}";
  return out;
}

std::string run(const std::string& id, const Json& program) {
  const Json& inputs = need(program, "inputs", Json::Arr);
  const Json& steps = need(program, "steps", Json::Arr);
  if (inputs.arr.empty() || steps.arr.empty()) throw RequestError("empty program");

  ag::Graph g(/*strict=*/true);
  std::vector<ag::Node*> nodes;  // program nodes only, in node order
  nodes.reserve(inputs.arr.size() + steps.arr.size());
  for (const Json& x : inputs.arr) {
    if (x.type != Json::Num) throw RequestError("an input is not a number");
    nodes.push_back(g.input(x.num));
  }
  const char* stage = "forward";
  try {
    for (const Json& step : steps.arr) {
      const std::string& op = need(step, "op", Json::Str).str;
      const Json& operands = need(step, "operands", Json::Arr);
      const Json* params = step.get("params");
      std::vector<ag::Node*> args;
      for (const Json& o : operands.arr) {
        if (const Json* k = o.get("node")) {
          if (k->type != Json::Num || k->num < 0 || k->num >= static_cast<double>(nodes.size()) ||
              k->num != std::floor(k->num))
            throw RequestError("bad node operand");
          args.push_back(nodes[static_cast<std::size_t>(k->num)]);
        } else if (const Json* c = o.get("const")) {
          if (c->type != Json::Num) throw RequestError("bad const operand");
          args.push_back(g.constant(c->num));
        } else {
          throw RequestError("an operand is neither node nor const");
        }
      }
      nodes.push_back(apply(g, op, args, params ? *params : Json()));
    }
    stage = "backward";
    g.backward(nodes.back());
  } catch (const ag::DomainError& e) {
    bool fwd = stage[0] == 'f';
    return error_answer(id, e.what(), true, stage, fwd ? static_cast<long>(nodes.size()) : -1,
                        "DomainError");
  } catch (const RequestError& e) {
    return error_answer(id, e.what(), false, stage, -1, "RequestError");
  } catch (const std::exception& e) {
    return error_answer(id, e.what(), false, stage, -1, "std::exception");
  }

  std::vector<double> values, grads;
  for (ag::Node* n : nodes) { values.push_back(n->data); grads.push_back(n->grad); }
  std::string out = "{\"id\": " + id + ", \"value\": ";
  put_number(out, nodes.back()->data);
  out += ", \"gradients\": ";
  put_numbers(out, std::vector<double>(grads.begin(), grads.begin() + static_cast<long>(inputs.arr.size())));
  out += ", \"nodes\": {\"values\": ";
  put_numbers(out, values);
  out += ", \"gradients\": ";
  put_numbers(out, grads);
  out += "}}";
  return out;
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  {
    std::string hs = "{\"protocol\": 1, \"engine\": \"refgrad-example-cpp\", \"ops\": [";
    bool first = true;
    for (const char* op : kOps) {
      if (!first) hs += ", ";
      first = false;
      put_string(hs, op);
    }
    hs += "], \"nodes\": true, \"strict\": true}";
    emit(hs);
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty() || line == "\r") continue;
    std::string id = "null";
    try {
      Json req = Parser(line).parse_document();
      if (req.type != Json::Obj) throw RequestError("a request is not an object");
      if (const Json* s = req.get("shutdown")) {
        if (s->type == Json::Bool && s->b) return 0;
      }
      const Json& idv = need(req, "id", Json::Num);
      id = idv.str;
      emit(run(id, need(req, "program", Json::Obj)));
    } catch (const std::exception& e) {
      std::cerr << "adapter: " << e.what() << "\n";
      emit(error_answer(id, e.what(), false, "forward", -1, "RequestError"));
    }
  }
  return 0;
}
