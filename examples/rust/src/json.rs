//! Just enough JSON for refgrad's protocol: a reader that turns one line into a [`Json`] tree,
//! and writers for numbers and strings.
//!
//! Numbers keep their text until asked for ([`Json::as_f64`] parses it with `str::parse::<f64>`,
//! which is correctly rounded, so `0.1`, `-0.0`, `5e-324` and `1e+300` read back as the doubles
//! they were written from). Besides standard JSON the reader takes the bare words `NaN`,
//! `Infinity` and `-Infinity`, which Python's `json.dumps` writes.

use std::fmt::Write as _;

/// A parsed JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A number as written (or one of the bare words `NaN`, `Infinity`, `-Infinity`).
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Members in the order written.
    Object(Vec<(String, Json)>),
}

/// Arrays and objects nested deeper than this are refused rather than risking the stack.
const MAX_DEPTH: usize = 256;

impl Json {
    /// Parses `text`, which must hold exactly one JSON value (whitespace around it is fine).
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut parser = Parser { text: text.as_bytes(), at: 0 };
        let value = parser.value(0)?;
        parser.skip_whitespace();
        if parser.at < parser.text.len() {
            return Err(parser.error("text after the value"));
        }
        Ok(value)
    }

    /// The member `key` of an object (the last one, if written twice); `None` for anything else.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A number as an `f64`; the strings `"NaN"`, `"Infinity"` and `"-Infinity"` count too.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(text) => text.parse().ok(),
            Json::String(s) => match s.as_str() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                _ => None,
            },
            _ => None,
        }
    }

    /// A number that is a whole number fitting an `i64` (`3`, and also `3.0` or `3e0`).
    pub fn as_i64(&self) -> Option<i64> {
        let Json::Number(text) = self else { return None };
        if let Ok(n) = text.parse::<i64>() {
            return Some(n);
        }
        let x: f64 = text.parse().ok()?;
        let limit = 2f64.powi(63); // the first double past i64::MAX
        (x.fract() == 0.0 && (-limit..limit).contains(&x)).then_some(x as i64)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Consumes `word` if the text continues with it.
    fn eat(&mut self, word: &str) -> bool {
        let found = self.text[self.at..].starts_with(word.as_bytes());
        if found {
            self.at += word.len();
        }
        found
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        self.skip_whitespace();
        match self.peek() {
            None => Err(self.error("a value expected")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (word, value) in [
                    ("true", Json::Bool(true)),
                    ("false", Json::Bool(false)),
                    ("null", Json::Null),
                    ("NaN", Json::Number("NaN".into())),
                    ("Infinity", Json::Number("Infinity".into())),
                ] {
                    if self.eat(word) {
                        return Ok(value);
                    }
                }
                Err(self.error("a value expected"))
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.at += 1; // {
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.eat("}") {
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("a member name expected"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if !self.eat(":") {
                return Err(self.error("':' expected"));
            }
            members.push((key, self.value(depth)?));
            self.skip_whitespace();
            if self.eat("}") {
                return Ok(Json::Object(members));
            }
            if !self.eat(",") {
                return Err(self.error("',' or '}' expected"));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.at += 1; // [
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.eat("]") {
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            if self.eat("]") {
                return Ok(Json::Array(items));
            }
            if !self.eat(",") {
                return Err(self.error("',' or ']' expected"));
            }
        }
    }

    /// A number, checked against JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        self.eat("-");
        if self.eat("Infinity") {
            return Ok(Json::Number("-Infinity".into()));
        }
        let digits = |p: &mut Self| {
            let first = p.at;
            while let Some(b'0'..=b'9') = p.peek() {
                p.at += 1;
            }
            p.at > first
        };
        if !self.eat("0") && !digits(self) {
            return Err(self.error("a digit expected"));
        }
        if self.eat(".") && !digits(self) {
            return Err(self.error("a digit expected after '.'"));
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if !self.eat("+") {
                self.eat("-");
            }
            if !digits(self) {
                return Err(self.error("a digit expected in the exponent"));
            }
        }
        // The bytes are ASCII digits and signs, so this slice is valid UTF-8.
        let text = std::str::from_utf8(&self.text[start..self.at]).map_err(|e| e.to_string())?;
        Ok(Json::Number(text.to_owned()))
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1; // "
        let mut bytes = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(escape) = self.peek() else {
                        return Err(self.error("unterminated string"));
                    };
                    self.at += 1;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.error("unknown escape")),
                    };
                    bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                0x00..=0x1f => return Err(self.error("control character in a string")),
                _ => bytes.push(b), // a byte of the (valid UTF-8) input, copied as it is
            }
        }
        String::from_utf8(bytes).map_err(|_| self.error("invalid UTF-8 in a string"))
    }

    /// The character of a `\uXXXX` escape (the `\u` already read), joining a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.eat("\\u") {
                return Err(self.error("lone surrogate in \\u escape"));
            }
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.error("lone surrogate in \\u escape"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.error("lone surrogate in \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.text.get(self.at..self.at + 4).ok_or_else(|| self.error("short \\u escape"))?;
        let digits = std::str::from_utf8(digits).map_err(|_| self.error("bad \\u escape"))?;
        let code = u32::from_str_radix(digits, 16).map_err(|_| self.error("bad \\u escape"))?;
        self.at += 4;
        Ok(code)
    }
}

/// Appends `x` so that it reads back as the same double: the shortest such digits (Rust's `{:?}`,
/// which keeps `-0.0`), and the strings `"NaN"`, `"Infinity"`, `"-Infinity"` for the rest.
pub fn write_number(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("\"NaN\"");
    } else if x == f64::INFINITY {
        out.push_str("\"Infinity\"");
    } else if x == f64::NEG_INFINITY {
        out.push_str("\"-Infinity\"");
    } else {
        write!(out, "{x:?}").expect("writing to a String cannot fail");
    }
}

/// Appends `[x0, x1, ...]`, each number as [`write_number`] writes it.
pub fn write_numbers(out: &mut String, xs: &[f64]) {
    out.push('[');
    for (i, &x) in xs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_number(out, x);
    }
    out.push(']');
}

/// Appends `s` as a JSON string, escaping quotes, backslashes and control characters (so that
/// the line never breaks).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                write!(out, "\\u{:04x}", u32::from(c)).expect("writing to a String cannot fail");
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(x: f64) -> String {
        let mut s = String::new();
        write_number(&mut s, x);
        s
    }

    #[test]
    fn numbers_round_trip() {
        for text in ["0.1", "-0.0", "5e-324", "1e+300", "1.7976931348623157e+308", "3", "-0", "2.5E-3"] {
            let x = Json::parse(text).unwrap().as_f64().unwrap();
            let written = number(x);
            let back = Json::parse(&written).unwrap().as_f64().unwrap();
            assert_eq!(x.to_bits(), back.to_bits(), "{text} -> {written}");
        }
        assert!(Json::parse("-0").unwrap().as_f64().unwrap().is_sign_negative());
        assert_eq!(Json::parse("1e+300").unwrap().as_f64(), Some(1e300));
        assert_eq!(Json::parse("5e-324").unwrap().as_f64(), Some(f64::from_bits(1)));
        assert_eq!(number(-0.0), "-0.0");
        assert_eq!(number(5e-324), "5e-324");
        assert_eq!(number(f64::NAN), "\"NaN\"");
        assert_eq!(number(f64::NEG_INFINITY), "\"-Infinity\"");
    }

    #[test]
    fn non_finite_words_and_strings() {
        for (text, want) in [("NaN", f64::NAN), ("Infinity", f64::INFINITY), ("-Infinity", f64::NEG_INFINITY)]
        {
            for written in [text.to_string(), format!("\"{text}\"")] {
                let x = Json::parse(&written).unwrap().as_f64().unwrap();
                assert_eq!(x.to_bits(), want.to_bits());
            }
        }
    }

    #[test]
    fn rejects_what_is_not_json() {
        for text in ["", "01", "1.", ".5", "+1", "1e", "[1,]", "{\"a\" 1}", "\"abc", "[1] x", "nul"] {
            assert!(Json::parse(text).is_err(), "{text:?} parsed");
        }
        assert!(Json::parse(&"[".repeat(100_000)).is_err());
    }

    #[test]
    fn strings_with_escapes() {
        let parsed =
            Json::parse(r#"{"s": "a\"b\\c\/d\n\t\u00e9\ud83d\ude00\u2028", "k": [true, null]}"#).unwrap();
        assert_eq!(parsed.get("s").and_then(Json::as_str), Some("a\"b\\c/d\n\té😀\u{2028}"));
        let mut out = String::new();
        write_string(&mut out, parsed.get("s").and_then(Json::as_str).unwrap());
        assert_eq!(Json::parse(&out).unwrap(), *parsed.get("s").unwrap());
        assert!(!out.contains('\n'));
    }

    #[test]
    fn integers() {
        assert_eq!(Json::parse("7").unwrap().as_i64(), Some(7));
        assert_eq!(Json::parse("7.0").unwrap().as_i64(), Some(7));
        assert_eq!(Json::parse("7.5").unwrap().as_i64(), None);
        assert_eq!(Json::parse("-9223372036854775808").unwrap().as_i64(), Some(i64::MIN));
        assert_eq!(Json::parse("1e19").unwrap().as_i64(), None);
    }
}
