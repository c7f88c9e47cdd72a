//! A reader for the part of Alloy's configuration syntax that `deploy/alloy/config.alloy`
//! uses: blocks (with an optional label), attributes, strings (quoted and backtick), numbers,
//! booleans, lists, objects, references and calls, and `//` / `/* */` comments.
//!
//! Hand-written because no crate reads Alloy syntax, and the tests must take the pipeline's
//! JSON paths and rules from the file itself rather than from a copy. What it does not know
//! it rejects with an error naming the line, so a config that grows past it fails loudly.

/// A value on the right of `=`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Number(f64),
    Bool(bool),
    Null,
    /// A reference to another component's export, such as `loki.write.lab.receiver`.
    Ref(String),
    List(Vec<Value>),
    /// Key-value pairs in the order written.
    Object(Vec<(String, Value)>),
    /// A standard-library call such as `sys.env("NAME")`.
    Call(String, Vec<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(pairs) => Some(pairs),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }
}

/// A block: `name "label" { attributes and blocks }`. The file itself is the root block, with
/// an empty name.
#[derive(Debug, Clone, Default)]
pub struct Block {
    pub name: String,
    pub label: Option<String>,
    pub attrs: Vec<(String, Value)>,
    pub blocks: Vec<Block>,
}

impl Block {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(Value::as_str)
    }

    pub fn blocks_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a Block> + use<'a, 'n> {
        self.blocks.iter().filter(move |b| b.name == name)
    }

    /// The one component `name "label"`, or a panic that says which is missing.
    pub fn component(&self, name: &str, label: &str) -> &Block {
        self.blocks_named(name)
            .find(|b| b.label.as_deref() == Some(label))
            .unwrap_or_else(|| panic!("config.alloy has no `{name} \"{label}\"` block"))
    }

    /// The one component of kind `name`, whatever its label.
    pub fn only(&self, name: &str) -> &Block {
        let found: Vec<&Block> = self.blocks_named(name).collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one `{name}` block in config.alloy, found {}",
            found.len()
        );
        found[0]
    }
}

/// Parses a whole configuration file into its root block.
pub fn parse(src: &str) -> Result<Block, String> {
    let tokens = tokenize(src)?;
    let mut parser = Parser { tokens, pos: 0 };
    let (attrs, blocks) = parser.body(false)?;
    Ok(Block {
        attrs,
        blocks,
        ..Block::default()
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Number(f64),
    Punct(char),
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
                i += 2;
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None | Some('\n') => {
                            return Err(format!("line {start}: unterminated string"))
                        }
                        Some('"') => break,
                        Some('\\') => {
                            let escaped = match chars.get(i + 1) {
                                Some('"') => '"',
                                Some('\\') => '\\',
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                other => {
                                    return Err(format!("line {line}: unknown escape \\{other:?}"))
                                }
                            };
                            s.push(escaped);
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push((Tok::Str(s), start));
            }
            '`' => {
                let start = line;
                let mut s = String::new();
                i += 1;
                while let Some(&ch) = chars.get(i) {
                    if ch == '`' {
                        break;
                    }
                    line += usize::from(ch == '\n');
                    s.push(ch);
                    i += 1;
                }
                if chars.get(i) != Some(&'`') {
                    return Err(format!("line {start}: unterminated raw string"));
                }
                i += 1;
                out.push((Tok::Str(s), start));
            }
            '{' | '}' | '[' | ']' | '(' | ')' | '=' | ',' => {
                out.push((Tok::Punct(c), line));
                i += 1;
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = text
                    .parse()
                    .map_err(|_| format!("line {line}: bad number {text}"))?;
                out.push((Tok::Number(n), line));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '_'
                        || (chars[i] == '.'
                            && chars
                                .get(i + 1)
                                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_')))
                {
                    i += 1;
                }
                out.push((Tok::Ident(chars[start..i].iter().collect()), line));
            }
            other => return Err(format!("line {line}: unexpected character {other:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn line(&self) -> usize {
        self.tokens
            .get(self.pos)
            .or(self.tokens.last())
            .map_or(0, |(_, l)| *l)
    }

    fn next(&mut self) -> Result<Tok, String> {
        let tok = self
            .tokens
            .get(self.pos)
            .map(|(t, _)| t.clone())
            .ok_or_else(|| "unexpected end of file".to_string())?;
        self.pos += 1;
        Ok(tok)
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        let line = self.line();
        match self.next()? {
            Tok::Punct(p) if p == c => Ok(()),
            other => Err(format!("line {line}: expected {c:?}, found {other:?}")),
        }
    }

    /// Attributes and blocks up to `}` (nested) or the end of the file (root).
    #[allow(clippy::type_complexity)]
    fn body(&mut self, nested: bool) -> Result<(Vec<(String, Value)>, Vec<Block>), String> {
        let (mut attrs, mut blocks) = (Vec::new(), Vec::new());
        loop {
            match self.peek() {
                None if !nested => return Ok((attrs, blocks)),
                Some(Tok::Punct('}')) if nested => {
                    self.pos += 1;
                    return Ok((attrs, blocks));
                }
                _ => {}
            }
            let line = self.line();
            let name = match self.next()? {
                Tok::Ident(name) => name,
                other => return Err(format!("line {line}: expected a name, found {other:?}")),
            };
            match self.next()? {
                Tok::Punct('=') => attrs.push((name, self.value()?)),
                Tok::Punct('{') => {
                    let (a, b) = self.body(true)?;
                    blocks.push(Block {
                        name,
                        label: None,
                        attrs: a,
                        blocks: b,
                    });
                }
                Tok::Str(label) => {
                    self.expect('{')?;
                    let (a, b) = self.body(true)?;
                    blocks.push(Block {
                        name,
                        label: Some(label),
                        attrs: a,
                        blocks: b,
                    });
                }
                other => return Err(format!("line {line}: after `{name}`: unexpected {other:?}")),
            }
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        let line = self.line();
        Ok(match self.next()? {
            Tok::Str(s) => Value::Str(s),
            Tok::Number(n) => Value::Number(n),
            Tok::Ident(id) if id == "true" => Value::Bool(true),
            Tok::Ident(id) if id == "false" => Value::Bool(false),
            Tok::Ident(id) if id == "null" => Value::Null,
            Tok::Ident(id) if self.peek() == Some(&Tok::Punct('(')) => {
                self.pos += 1;
                Value::Call(id, self.items(')')?)
            }
            Tok::Ident(id) => Value::Ref(id),
            Tok::Punct('[') => Value::List(self.items(']')?),
            Tok::Punct('{') => {
                let mut pairs = Vec::new();
                loop {
                    let line = self.line();
                    let key = match self.next()? {
                        Tok::Punct('}') => break,
                        Tok::Ident(k) | Tok::Str(k) => k,
                        other => return Err(format!("line {line}: bad object key {other:?}")),
                    };
                    self.expect('=')?;
                    pairs.push((key, self.value()?));
                    match self.next()? {
                        Tok::Punct(',') => {}
                        Tok::Punct('}') => break,
                        other => return Err(format!("line {line}: in object: {other:?}")),
                    }
                }
                Value::Object(pairs)
            }
            other => return Err(format!("line {line}: expected a value, found {other:?}")),
        })
    }

    /// Comma-separated values up to `close`, a trailing comma allowed.
    fn items(&mut self, close: char) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(&Tok::Punct(close)) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            let line = self.line();
            match self.next()? {
                Tok::Punct(',') => {}
                Tok::Punct(c) if c == close => return Ok(items),
                other => {
                    return Err(format!(
                        "line {line}: expected , or {close:?}, found {other:?}"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_understands_blocks_labels_objects_lists_and_comments() {
        let root = parse(
            r#"
            // a comment
            a.b "x" {
              s = "q\"uote"  /* inline */
              r = `raw "json"`
              l = ["p", "q",]
              o = { k = "", "k-2" = 2, }
              f = other.thing.export
              inner { n = true }
            }
            "#,
        )
        .expect("parses");
        let b = root.component("a.b", "x");
        assert_eq!(b.str_attr("s"), Some("q\"uote"));
        assert_eq!(b.str_attr("r"), Some("raw \"json\""));
        assert_eq!(
            b.attr("l").and_then(Value::as_list).map(<[Value]>::len),
            Some(2)
        );
        let o = b.attr("o").and_then(Value::as_object).expect("object");
        assert_eq!(o[1], ("k-2".to_string(), Value::Number(2.0)));
        assert_eq!(b.attr("f"), Some(&Value::Ref("other.thing.export".into())));
        assert_eq!(b.only("inner").attr("n"), Some(&Value::Bool(true)));
    }

    #[test]
    fn the_reader_rejects_what_it_does_not_understand() {
        assert!(parse("a { b = }").is_err());
        assert!(parse("a { b = \"open }").is_err());
        assert!(parse("a \"x\" { ").is_err());
    }
}
