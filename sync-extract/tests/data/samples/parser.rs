//! A tiny expression parser.

use std::collections::HashMap;
use std::fmt;

/// Errors the parser reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    /// The input ended early.
    UnexpectedEnd,
    /// A character that starts no token.
    BadChar(char, usize),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnexpectedEnd => write!(f, "unexpected end of input"),
            ParseError::BadChar(c, at) => write!(f, "bad character {c:?} at {at}"),
        }
    }
}

/// A parser over a string of tokens.
#[derive(Debug, Default)]
pub struct Parser {
    tokens: Vec<String>,
    pos: usize,
    vars: HashMap<String, i64>,
}

impl Parser {
    /// A parser for `input`.
    pub fn new(input: &str) -> Self {
        let tokens = input.split_whitespace().map(str::to_owned).collect();
        Self { tokens, pos: 0, vars: HashMap::new() }
    }

    /// Parses a block of statements, one per line, and returns the value of the last.
    #[inline]
    pub fn parse_block(&mut self) -> Result<i64, ParseError> {
        let mut last = 0;
        while self.pos < self.tokens.len() {
            let token = self.tokens[self.pos].clone();
            self.pos += 1;
            last = match token.as_str() {
                "let" => {
                    let name = self.next()?;
                    let value = self.parse_expr()?;
                    self.vars.insert(name, value);
                    value
                }
                "print" => {
                    let value = self.parse_expr()?;
                    value
                }
                other => other.parse().map_err(|_| ParseError::BadChar('?', self.pos))?,
            };
        }
        Ok(last)
    }

    /// Parses one expression: a number, a variable, or `+ a b`.
    fn parse_expr(&mut self) -> Result<i64, ParseError> {
        let token = self.next()?;
        if token == "+" {
            let a = self.parse_expr()?;
            let b = self.parse_expr()?;
            return Ok(a + b);
        }
        if let Some(v) = self.vars.get(&token) {
            return Ok(*v);
        }
        token.parse().map_err(|_| ParseError::BadChar('#', self.pos))
    }

    fn next(&mut self) -> Result<String, ParseError> {
        let token = self.tokens.get(self.pos).cloned().ok_or(ParseError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(token)
    }
}

/// Networking helpers.
pub mod net {
    /// A connection.
    pub struct Conn {
        /// The peer's address.
        pub addr: String,
    }

    /// Opens a connection.
    pub fn open(addr: &str) -> Conn {
        Conn { addr: addr.to_owned() }
    }
}

/// Evaluates `input`.
pub fn eval(input: &str) -> Result<i64, ParseError> {
    Parser::new(input).parse_block()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds() {
        assert_eq!(eval("+ 1 2").unwrap(), 3);
    }
}
