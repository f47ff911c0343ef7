//! Rust code for a parsed schema: one struct per class (all classes share
//! one namespace, so class names must be unique across modules) with a
//! [`crate::Record`] impl, plus [`RECORD_NAMES`]-style helpers for tests and
//! fuzzing. Used from build scripts:
//!
//! ```ignore
//! let src = std::fs::read_to_string("zookeeper.jute")?;
//! let code = janus_jute::codegen::generate(&janus_jute::schema::parse(&src)?);
//! std::fs::write(out_dir.join("zookeeper.rs"), code)?;
//! ```

use std::fmt::Write;

use crate::schema::{Schema, Type};

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while", "async",
    "await", "dyn", "abstract", "become", "box", "do", "final", "macro", "override", "priv",
    "typeof", "unsized", "virtual", "yield", "try",
];

/// `lastZxidSeen` → `last_zxid_seen`; Rust keywords get `r#`.
pub fn field_ident(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if prev_lower || (prev_upper && next_lower) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(*c);
        }
    }
    if KEYWORDS.contains(&out.as_str()) {
        format!("r#{out}")
    } else {
        out
    }
}

fn class_name(qualified: &str) -> &str {
    qualified.rsplit('.').next().unwrap_or(qualified)
}

fn rust_type(t: &Type) -> String {
    match t {
        Type::Byte => "i8".into(),
        Type::Bool => "bool".into(),
        Type::Int => "i32".into(),
        Type::Long => "i64".into(),
        Type::Float => "f32".into(),
        Type::Double => "f64".into(),
        Type::UString => "::std::string::String".into(),
        // Java's byte[] may be null, and ZooKeeper keeps null data as such.
        Type::Buffer => "::std::option::Option<::std::vec::Vec<u8>>".into(),
        Type::Vector(inner) => format!("::std::vec::Vec<{}>", rust_type(inner)),
        Type::Record(r) => class_name(r).to_string(),
    }
}

/// An expression writing `value` (a reference) to `w`.
fn encode_expr(t: &Type, value: &str, w: &str, depth: usize) -> String {
    match t {
        Type::Byte => format!("{w}.byte(*{value})"),
        Type::Bool => format!("{w}.bool(*{value})"),
        Type::Int => format!("{w}.i32(*{value})"),
        Type::Long => format!("{w}.i64(*{value})"),
        Type::Float => format!("{w}.f32(*{value})"),
        Type::Double => format!("{w}.f64(*{value})"),
        Type::UString => format!("{w}.string({value})"),
        Type::Buffer => format!("{w}.nullable_buffer(({value}).as_deref())"),
        Type::Vector(inner) => {
            let (iw, ix) = (format!("w{depth}"), format!("x{depth}"));
            format!(
                "{w}.vec({value}, |{iw}, {ix}| {{ {}; }})",
                encode_expr(inner, &ix, &iw, depth + 1)
            )
        }
        Type::Record(_) => format!("::janus_jute::Record::encode({value}, {w})"),
    }
}

/// An expression reading one value from `r`, yielding `Result<_, DecodeError>`.
fn decode_expr(t: &Type, r: &str, depth: usize) -> String {
    match t {
        Type::Byte => format!("{r}.byte()"),
        Type::Bool => format!("{r}.bool()"),
        Type::Int => format!("{r}.i32()"),
        Type::Long => format!("{r}.i64()"),
        Type::Float => format!("{r}.f32()"),
        Type::Double => format!("{r}.f64()"),
        Type::UString => format!("{r}.string()"),
        Type::Buffer => format!("{r}.nullable_buffer()"),
        Type::Vector(inner) => {
            let ir = format!("r{depth}");
            format!("{r}.vec(|{ir}| {})", decode_expr(inner, &ir, depth + 1))
        }
        Type::Record(name) => format!(
            "<{} as ::janus_jute::Record>::decode({r})",
            class_name(name)
        ),
    }
}

fn has_float(schema: &Schema, t: &Type, from: &str, depth: usize) -> bool {
    if depth > 32 {
        return false;
    }
    match t {
        Type::Float | Type::Double => true,
        Type::Vector(inner) => has_float(schema, inner, from, depth + 1),
        Type::Record(r) => schema.resolve(from, r).is_some_and(|c| {
            c.fields
                .iter()
                .any(|f| has_float(schema, &f.ty, from, depth + 1))
        }),
        _ => false,
    }
}

/// Generate the Rust source for every class in `schema`.
pub fn generate(schema: &Schema) -> String {
    let mut o = String::new();
    o.push_str("// @generated by janus-jute from the jute schema. Do not edit.\n\n");
    for m in &schema.modules {
        for c in &m.classes {
            let eq = !c
                .fields
                .iter()
                .any(|f| has_float(schema, &f.ty, &m.name, 0));
            let _ = writeln!(o, "/// `{}.{}`", m.name, c.name);
            let derives = if eq {
                "Debug, Clone, PartialEq, Eq, Default"
            } else {
                "Debug, Clone, PartialEq, Default"
            };
            let _ = writeln!(
                o,
                "#[allow(non_camel_case_types, clippy::upper_case_acronyms)]"
            );
            let _ = writeln!(o, "#[derive({derives})]");
            let _ = writeln!(o, "pub struct {} {{", c.name);
            for f in &c.fields {
                let _ = writeln!(o, "    pub {}: {},", field_ident(&f.name), rust_type(&f.ty));
            }
            let _ = writeln!(o, "}}\n");
            let _ = writeln!(o, "impl ::janus_jute::Record for {} {{", c.name);
            let _ = writeln!(o, "    const NAME: &'static str = {:?};", c.name);
            // Field and vector-item values go through one reference form.
            let _ = writeln!(o, "    #[allow(unused_variables, clippy::deref_addrof)]");
            let _ = writeln!(o, "    fn encode(&self, w: &mut ::janus_jute::Writer) {{");
            for f in &c.fields {
                let v = format!("&self.{}", field_ident(&f.name));
                let _ = writeln!(o, "        {};", encode_expr(&f.ty, &v, "w", 0));
            }
            let _ = writeln!(o, "    }}");
            let _ = writeln!(o, "    #[allow(unused_variables)]");
            let _ = writeln!(
                o,
                "    fn decode(r: &mut ::janus_jute::Reader<'_>) -> ::std::result::Result<Self, ::janus_jute::DecodeError> {{"
            );
            let _ = writeln!(o, "        Ok({} {{", c.name);
            for f in &c.fields {
                let _ = writeln!(
                    o,
                    "            {}: {}?,",
                    field_ident(&f.name),
                    decode_expr(&f.ty, "r", 0)
                );
            }
            let _ = writeln!(o, "        }})");
            let _ = writeln!(o, "    }}");
            let _ = writeln!(o, "}}\n");
        }
    }
    // Every record's name, and a decoder check over all of them for fuzzing.
    let names: Vec<&str> = schema.classes().map(|c| c.name.as_str()).collect();
    let _ = writeln!(o, "/// The name of every generated record.");
    let _ = writeln!(o, "pub const RECORD_NAMES: &[&str] = &{names:?};\n");
    let _ = writeln!(
        o,
        "/// Decode `bytes` as every record type; each one that decodes must"
    );
    let _ = writeln!(
        o,
        "/// re-encode to bytes that decode and re-encode identically. Returns how"
    );
    let _ = writeln!(
        o,
        "/// many record types accepted the input. Panics only on a codec bug."
    );
    let _ = writeln!(o, "pub fn fuzz_decode_all(bytes: &[u8]) -> usize {{");
    let _ = writeln!(o, "    let mut ok = 0;");
    for n in &names {
        let _ = writeln!(
            o,
            "    if let Ok(v) = <{n} as ::janus_jute::Record>::from_bytes(bytes) {{"
        );
        let _ = writeln!(o, "        let once = ::janus_jute::Record::to_bytes(&v);");
        let _ = writeln!(o, "        let again = <{n} as ::janus_jute::Record>::from_bytes(&once).map(|v| ::janus_jute::Record::to_bytes(&v));");
        let _ = writeln!(
            o,
            "        assert_eq!(again.as_ref(), Ok(&once), \"{n} round trip\");"
        );
        let _ = writeln!(o, "        ok += 1;");
        let _ = writeln!(o, "    }}");
    }
    let _ = writeln!(o, "    ok\n}}");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents() {
        assert_eq!(field_ident("lastZxidSeen"), "last_zxid_seen");
        assert_eq!(field_ident("type"), "r#type");
        assert_eq!(field_ident("czxid"), "czxid");
        assert_eq!(field_ident("ACL"), "acl");
        assert_eq!(field_ident("prefixPath"), "prefix_path");
    }

    #[test]
    fn generates_structs() {
        let s = crate::schema::parse(
            "module m { class A { int x; vector<ustring> ys; } class B { A a; vector<A> as_; } }",
        )
        .unwrap();
        let code = generate(&s);
        assert!(code.contains("pub struct A {"));
        assert!(code.contains("pub ys: ::std::vec::Vec<::std::string::String>,"));
        assert!(code.contains("pub RECORD_NAMES") || code.contains("RECORD_NAMES"));
    }
}
