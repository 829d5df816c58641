//! The languages the syntax extractor knows: file names, grammars and, per grammar, which
//! nodes are units and how a unit is named.

use sync_core::RepoPath;

/// A language the [`SyntaxChunker`](crate::SyntaxChunker) chunks by syntax.
///
/// Every variant exists whatever the crate's features; a language whose grammar feature is
/// off is chunked by the [`CdcLineChunker`](crate::CdcLineChunker).
///
/// ```
/// use sync_core::RepoPath;
/// use sync_extract::Language;
/// assert_eq!(Language::from_path(&RepoPath::new("src/lib.rs")?), Some(Language::Rust));
/// assert_eq!(Language::from_path(&RepoPath::new("app/View.tsx")?).map(Language::name), Some("tsx"));
/// assert_eq!(Language::from_path(&RepoPath::new("data.bin")?), None);
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Language {
    /// Rust (`.rs`).
    Rust,
    /// Python (`.py`, `.pyi`, `.pyw`).
    Python,
    /// JavaScript and JSX (`.js`, `.mjs`, `.cjs`, `.jsx`).
    JavaScript,
    /// TypeScript (`.ts`, `.mts`, `.cts`).
    TypeScript,
    /// TSX (`.tsx`).
    Tsx,
    /// Go (`.go`).
    Go,
    /// Java (`.java`).
    Java,
    /// C (`.c`, `.h`).
    C,
    /// C++ (`.cc`, `.cpp`, `.cxx`, `.hpp`, `.hh`, `.hxx`, ...).
    Cpp,
    /// C# (`.cs`).
    CSharp,
    /// PHP (`.php`).
    Php,
    /// Ruby (`.rb`, `.rake`, `.gemspec`, `Rakefile`, `Gemfile`).
    Ruby,
    /// Markdown (`.md`, `.markdown`), chunked by headings.
    Markdown,
}

impl Language {
    /// Every language, in declaration order.
    pub const ALL: [Language; 13] = [
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::TypeScript,
        Language::Tsx,
        Language::Go,
        Language::Java,
        Language::C,
        Language::Cpp,
        Language::CSharp,
        Language::Php,
        Language::Ruby,
        Language::Markdown,
    ];

    /// The language of a file, from its name; `None` when unknown.
    pub fn from_path(path: &RepoPath) -> Option<Language> {
        let name = path.file_name();
        match name {
            b"Rakefile" | b"Gemfile" | b"Guardfile" | b"Vagrantfile" => {
                return Some(Language::Ruby);
            }
            _ => {}
        }
        let dot = name.iter().rposition(|&b| b == b'.')?;
        let ext = std::str::from_utf8(&name[dot + 1..]).ok()?;
        Some(match ext.to_ascii_lowercase().as_str() {
            "rs" => Language::Rust,
            "py" | "pyi" | "pyw" => Language::Python,
            "js" | "mjs" | "cjs" | "jsx" => Language::JavaScript,
            "ts" | "mts" | "cts" => Language::TypeScript,
            "tsx" => Language::Tsx,
            "go" => Language::Go,
            "java" => Language::Java,
            "c" | "h" => Language::C,
            "cc" | "cpp" | "cxx" | "c++" | "hpp" | "hh" | "hxx" | "h++" | "ipp" | "tpp" | "inl" => {
                Language::Cpp
            }
            "cs" => Language::CSharp,
            "php" | "phtml" => Language::Php,
            "rb" | "rake" | "gemspec" | "ru" => Language::Ruby,
            "md" | "markdown" | "mdown" | "mkd" => Language::Markdown,
            _ => return None,
        })
    }

    /// The lowercase name, as stored in [`ChunkMeta::language`](sync_core::ChunkMeta):
    /// `rust`, `python`, `javascript`, `typescript`, `tsx`, `go`, `java`, `c`, `cpp`,
    /// `csharp`, `php`, `ruby`, `markdown`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::Go => "go",
            Language::Java => "java",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::CSharp => "csharp",
            Language::Php => "php",
            Language::Ruby => "ruby",
            Language::Markdown => "markdown",
        }
    }

    /// The tree-sitter grammar, when this build has it.
    pub(crate) fn grammar(self) -> Option<tree_sitter::Language> {
        match self {
            #[cfg(feature = "rust")]
            Language::Rust => Some(tree_sitter_rust::LANGUAGE.into()),
            #[cfg(feature = "python")]
            Language::Python => Some(tree_sitter_python::LANGUAGE.into()),
            #[cfg(feature = "javascript")]
            Language::JavaScript => Some(tree_sitter_javascript::LANGUAGE.into()),
            #[cfg(feature = "typescript")]
            Language::TypeScript => Some(tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into()),
            #[cfg(feature = "typescript")]
            Language::Tsx => Some(tree_sitter_typescript::LANGUAGE_TSX.into()),
            #[cfg(feature = "go")]
            Language::Go => Some(tree_sitter_go::LANGUAGE.into()),
            #[cfg(feature = "java")]
            Language::Java => Some(tree_sitter_java::LANGUAGE.into()),
            #[cfg(feature = "c")]
            Language::C => Some(tree_sitter_c::LANGUAGE.into()),
            #[cfg(feature = "cpp")]
            Language::Cpp => Some(tree_sitter_cpp::LANGUAGE.into()),
            #[cfg(feature = "csharp")]
            Language::CSharp => Some(tree_sitter_c_sharp::LANGUAGE.into()),
            #[cfg(feature = "php")]
            Language::Php => Some(tree_sitter_php::LANGUAGE_PHP.into()),
            #[cfg(feature = "ruby")]
            Language::Ruby => Some(tree_sitter_ruby::LANGUAGE.into()),
            _ => None,
        }
    }

    /// Whether a node kind is a unit in this language: `(word, kind)`, the short word of
    /// the symbol path (`fn`, `class`) and the chunk kind (`function`, `class`). A word of
    /// `""` means the node's first token (`const`, `let`).
    pub(crate) fn unit(self, node_kind: &str) -> Option<(&'static str, &'static str)> {
        use Language::*;
        let unit = match (self, node_kind) {
            (Rust, "function_item" | "function_signature_item") => ("fn", "function"),
            (Rust, "impl_item") => ("impl", "impl"),
            (Rust, "trait_item") => ("trait", "trait"),
            (Rust, "struct_item") => ("struct", "struct"),
            (Rust, "enum_item") => ("enum", "enum"),
            (Rust, "union_item") => ("union", "union"),
            (Rust, "mod_item") => ("mod", "module"),
            (Rust, "macro_definition") => ("macro", "macro"),
            (Rust, "const_item") => ("const", "const"),
            (Rust, "static_item") => ("static", "static"),
            (Rust, "type_item") => ("type", "type"),

            (Python, "function_definition") => ("def", "function"),
            (Python, "class_definition") => ("class", "class"),

            (
                JavaScript | TypeScript | Tsx,
                "function_declaration" | "generator_function_declaration",
            ) => ("function", "function"),
            (JavaScript | TypeScript | Tsx, "class_declaration") => ("class", "class"),
            (JavaScript | TypeScript | Tsx, "method_definition") => ("method", "method"),
            (JavaScript | TypeScript | Tsx, "lexical_declaration" | "variable_declaration") => {
                ("", "variable")
            }
            (TypeScript | Tsx, "abstract_class_declaration") => ("class", "class"),
            (TypeScript | Tsx, "interface_declaration") => ("interface", "interface"),
            (TypeScript | Tsx, "type_alias_declaration") => ("type", "type"),
            (TypeScript | Tsx, "enum_declaration") => ("enum", "enum"),
            (TypeScript | Tsx, "internal_module") => ("namespace", "module"),
            (TypeScript | Tsx, "module") => ("module", "module"),
            (TypeScript | Tsx, "function_signature") => ("function", "function"),
            (TypeScript | Tsx, "method_signature" | "abstract_method_signature") => {
                ("method", "method")
            }

            (Go, "function_declaration") => ("func", "function"),
            (Go, "method_declaration") => ("func", "method"),
            (Go, "type_declaration") => ("type", "type"),
            (Go, "const_declaration") => ("const", "const"),
            (Go, "var_declaration") => ("var", "variable"),

            (Java, "class_declaration") => ("class", "class"),
            (Java, "interface_declaration") => ("interface", "interface"),
            (Java, "enum_declaration") => ("enum", "enum"),
            (Java, "record_declaration") => ("record", "record"),
            (Java, "annotation_type_declaration") => ("@interface", "interface"),
            (Java, "method_declaration") => ("method", "method"),
            (Java, "constructor_declaration" | "compact_constructor_declaration") => {
                ("constructor", "constructor")
            }

            (C | Cpp, "function_definition") => ("fn", "function"),
            (C | Cpp, "struct_specifier") => ("struct", "struct"),
            (C | Cpp, "union_specifier") => ("union", "union"),
            (C | Cpp, "enum_specifier") => ("enum", "enum"),
            (C | Cpp, "type_definition") => ("typedef", "type"),
            (Cpp, "class_specifier") => ("class", "class"),
            (Cpp, "namespace_definition") => ("namespace", "namespace"),
            (Cpp, "concept_definition") => ("concept", "concept"),

            (CSharp, "class_declaration") => ("class", "class"),
            (CSharp, "struct_declaration") => ("struct", "struct"),
            (CSharp, "interface_declaration") => ("interface", "interface"),
            (CSharp, "enum_declaration") => ("enum", "enum"),
            (CSharp, "record_declaration") => ("record", "record"),
            (CSharp, "method_declaration" | "local_function_statement") => ("method", "method"),
            (CSharp, "constructor_declaration") => ("constructor", "constructor"),
            (CSharp, "property_declaration") => ("property", "property"),
            (CSharp, "namespace_declaration" | "file_scoped_namespace_declaration") => {
                ("namespace", "namespace")
            }

            (Php, "function_definition") => ("function", "function"),
            (Php, "method_declaration") => ("function", "method"),
            (Php, "class_declaration") => ("class", "class"),
            (Php, "interface_declaration") => ("interface", "interface"),
            (Php, "trait_declaration") => ("trait", "trait"),
            (Php, "enum_declaration") => ("enum", "enum"),
            (Php, "namespace_definition") => ("namespace", "namespace"),

            (Ruby, "method" | "singleton_method") => ("def", "method"),
            (Ruby, "class") => ("class", "class"),
            (Ruby, "module") => ("module", "module"),
            _ => return None,
        };
        Some(unit)
    }
}

/// Nodes that belong to the unit after them: comments, attributes, decorators, annotations
/// and C++ template heads.
pub(crate) fn attaches_forward(node_kind: &str) -> bool {
    node_kind.contains("comment")
        || node_kind.contains("attribute")
        || node_kind.contains("decorator")
        || node_kind.contains("annotation")
        || node_kind == "template_parameter_list"
        || node_kind == "template"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_and_distinct() {
        let names: std::collections::BTreeSet<_> = Language::ALL.iter().map(|l| l.name()).collect();
        assert_eq!(names.len(), Language::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase()))
        );
    }

    #[test]
    fn file_names_map_to_languages() {
        let of = |p: &str| Language::from_path(&RepoPath::new(p).unwrap());
        assert_eq!(of("a/b/main.go"), Some(Language::Go));
        assert_eq!(of("x.PY"), Some(Language::Python));
        assert_eq!(of("inc/vec.hpp"), Some(Language::Cpp));
        assert_eq!(of("lib.h"), Some(Language::C));
        assert_eq!(of("Program.cs"), Some(Language::CSharp));
        assert_eq!(of("Rakefile"), Some(Language::Ruby));
        assert_eq!(of("docs/README.md"), Some(Language::Markdown));
        assert_eq!(of("Makefile"), None);
        assert_eq!(of("archive.tar.gz"), None);
    }

    #[test]
    #[cfg(all(
        feature = "rust",
        feature = "python",
        feature = "javascript",
        feature = "typescript",
        feature = "go",
        feature = "java",
        feature = "c",
        feature = "cpp",
        feature = "csharp",
        feature = "php",
        feature = "ruby"
    ))]
    fn every_grammar_loads() {
        for lang in Language::ALL {
            if lang == Language::Markdown {
                assert!(lang.grammar().is_none());
                continue;
            }
            let grammar = lang
                .grammar()
                .unwrap_or_else(|| panic!("{lang:?} grammar missing"));
            let mut parser = tree_sitter::Parser::new();
            parser.set_language(&grammar).unwrap();
        }
    }
}
