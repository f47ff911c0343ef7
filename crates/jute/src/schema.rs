//! The jute IDL: `module a.b.c { class Name { type field; ... } ... }`,
//! with `//` and `/* */` comments. Types: `byte`, `boolean`, `int`, `long`,
//! `float`, `double`, `ustring`, `buffer`, `vector<T>` and records, named
//! plainly or fully qualified.

/// A field's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    Byte,
    Bool,
    Int,
    Long,
    Float,
    Double,
    UString,
    Buffer,
    Vector(Box<Type>),
    /// A record, by its (possibly qualified) name as written.
    Record(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: Type,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub name: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub classes: Vec<Class>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schema {
    pub modules: Vec<Module>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("jute schema, line {line}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Punct(char),
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let (mut i, mut line) = (0, 1);
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = line;
                i += 2;
                loop {
                    if i + 1 >= b.len() {
                        return Err(ParseError {
                            line: start,
                            msg: "unterminated comment".into(),
                        });
                    }
                    if b[i] == b'*' && b[i + 1] == b'/' {
                        i += 2;
                        break;
                    }
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            b'{' | b'}' | b'<' | b'>' | b';' => {
                out.push((Tok::Punct(c as char), line));
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let s = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                out.push((Tok::Ident(src[s..i].to_string()), line));
            }
            _ => {
                return Err(ParseError {
                    line,
                    msg: format!("unexpected character {:?}", c as char),
                })
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(1, |t| t.1)
    }
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line(),
            msg: msg.into(),
        })
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn ident(&mut self) -> Result<String, ParseError> {
        match self.toks.get(self.pos) {
            Some((Tok::Ident(s), _)) => {
                self.pos += 1;
                Ok(s.clone())
            }
            other => self.err(format!("expected a name, found {other:?}")),
        }
    }
    fn punct(&mut self, p: char) -> Result<(), ParseError> {
        match self.toks.get(self.pos) {
            Some((Tok::Punct(c), _)) if *c == p => {
                self.pos += 1;
                Ok(())
            }
            other => self.err(format!("expected '{p}', found {other:?}")),
        }
    }
    fn keyword(&mut self, k: &str) -> Result<(), ParseError> {
        let s = self.ident()?;
        if s != k {
            return self.err(format!("expected '{k}', found '{s}'"));
        }
        Ok(())
    }
    fn ty(&mut self) -> Result<Type, ParseError> {
        let name = self.ident()?;
        Ok(match name.as_str() {
            "byte" => Type::Byte,
            "boolean" => Type::Bool,
            "int" => Type::Int,
            "long" => Type::Long,
            "float" => Type::Float,
            "double" => Type::Double,
            "ustring" => Type::UString,
            "buffer" => Type::Buffer,
            "vector" => {
                self.punct('<')?;
                let inner = self.ty()?;
                self.punct('>')?;
                Type::Vector(Box::new(inner))
            }
            _ => Type::Record(name),
        })
    }
    fn class(&mut self) -> Result<Class, ParseError> {
        self.keyword("class")?;
        let name = self.ident()?;
        self.punct('{')?;
        let mut fields = Vec::new();
        while self.peek() != Some(&Tok::Punct('}')) {
            let ty = self.ty()?;
            let fname = self.ident()?;
            self.punct(';')?;
            if fields.iter().any(|f: &Field| f.name == fname) {
                return self.err(format!("{name}: duplicate field {fname}"));
            }
            fields.push(Field { name: fname, ty });
        }
        self.punct('}')?;
        Ok(Class { name, fields })
    }
    fn module(&mut self) -> Result<Module, ParseError> {
        self.keyword("module")?;
        let name = self.ident()?;
        self.punct('{')?;
        let mut classes = Vec::new();
        while self.peek() != Some(&Tok::Punct('}')) {
            if self.peek().is_none() {
                return self.err("unterminated module");
            }
            classes.push(self.class()?);
        }
        self.punct('}')?;
        Ok(Module { name, classes })
    }
}

/// Parse a schema and check that every record it names is defined.
pub fn parse(src: &str) -> Result<Schema, ParseError> {
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
    };
    let mut schema = Schema::default();
    while p.peek().is_some() {
        schema.modules.push(p.module()?);
    }
    let names: Vec<(String, String)> = schema
        .modules
        .iter()
        .flat_map(|m| {
            m.classes
                .iter()
                .map(move |c| (m.name.clone(), c.name.clone()))
        })
        .collect();
    for m in &schema.modules {
        for c in &m.classes {
            for f in &c.fields {
                let mut t = &f.ty;
                while let Type::Vector(inner) = t {
                    t = inner;
                }
                if let Type::Record(r) = t {
                    if schema.resolve(&m.name, r).is_none() {
                        return Err(ParseError {
                            line: 0,
                            msg: format!("{}.{}: unknown record {r}", c.name, f.name),
                        });
                    }
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (_, c) in &names {
        if !seen.insert(c) {
            return Err(ParseError {
                line: 0,
                msg: format!("class {c} defined twice"),
            });
        }
    }
    Ok(schema)
}

impl Schema {
    /// Find the class a field's record type refers to, from module `from`.
    pub fn resolve(&self, from: &str, name: &str) -> Option<&Class> {
        let (module, class) = match name.rfind('.') {
            Some(i) => (&name[..i], &name[i + 1..]),
            None => (from, name),
        };
        self.modules
            .iter()
            .find(|m| m.name == module)?
            .classes
            .iter()
            .find(|c| c.name == class)
    }

    pub fn classes(&self) -> impl Iterator<Item = &Class> {
        self.modules.iter().flat_map(|m| m.classes.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modules_classes_and_types() {
        let s = parse(
            "/* c */ module a.b { class Id { ustring scheme; // x\n ustring id; }\n class L { vector<a.b.Id> ids; vector<vector<int>> m; buffer b; Id one; } }",
        )
        .unwrap();
        assert_eq!(s.modules[0].name, "a.b");
        let l = &s.modules[0].classes[1];
        assert_eq!(
            l.fields[0].ty,
            Type::Vector(Box::new(Type::Record("a.b.Id".into())))
        );
        assert_eq!(
            l.fields[1].ty,
            Type::Vector(Box::new(Type::Vector(Box::new(Type::Int))))
        );
        assert!(s.resolve("a.b", "Id").is_some());
    }

    #[test]
    fn rejects_bad_schemas() {
        assert!(parse("module a { class X { Y y; } }").is_err());
        assert!(parse("module a { class X { int y; int y; } }").is_err());
        assert!(parse("module a { class X { int y } }").is_err());
        assert!(parse("module a { class X { int y; }").is_err());
        assert!(parse("module a { /* ").is_err());
        assert!(parse("module a { class X { int $; } }").is_err());
    }
}
