//! The paper as a list of blocks (headings, paragraphs, tables, figures),
//! and its two renderings:
//!
//! - HTML: one self-contained file, every figure a base64 PNG `data:` URI,
//!   the style sheet inline (with print rules: A4 margins, no figure or
//!   table row split across pages); it opens offline.
//! - Markdown: for blogs; each figure a PNG file beside it, linked by name.
//!
//! Tables carry an `id` (HTML) and a numbered caption (both), so a reader,
//! or a test, can find each one.

use std::fmt::Write as _;

/// A part of the paper.
pub enum Block {
    /// A section heading (level 2) or subsection (level 3).
    Heading(u8, String),
    /// A paragraph of plain text.
    Para(String),
    /// A remark set apart: something the reader must know (a figure left
    /// out, files that disagree).
    Note(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table.
    Table(Table),
    /// A figure.
    Figure(Figure),
}

/// A table: caption, header and rows of text.
pub struct Table {
    /// Its HTML id (`per-class`, `confusion`, ...).
    pub id: String,
    /// "Table N. ..." (numbered by [`Document::push_table`]).
    pub caption: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows of cells, as many as the header.
    pub rows: Vec<Vec<String>>,
}

/// A figure: a PNG and its caption.
pub struct Figure {
    /// Its HTML id, and the Markdown file's middle name (`samples`).
    pub id: String,
    /// "Figure N. ..." (numbered by [`Document::push_figure`]).
    pub caption: String,
    /// Text for readers who cannot see it.
    pub alt: String,
    /// The picture.
    pub png: Vec<u8>,
}

/// The whole paper.
pub struct Document {
    /// The title.
    pub title: String,
    /// The line under the title (who wrote it, from which files).
    pub byline: String,
    /// Everything after the byline, in order.
    pub blocks: Vec<Block>,
    tables: usize,
    figures: usize,
}

impl Document {
    /// An empty paper.
    pub fn new(title: String, byline: String) -> Document {
        Document {
            title,
            byline,
            blocks: Vec::new(),
            tables: 0,
            figures: 0,
        }
    }

    /// Appends a block.
    pub fn push(&mut self, b: Block) {
        self.blocks.push(b);
    }

    /// Appends a section heading.
    pub fn section(&mut self, title: &str) {
        self.push(Block::Heading(2, title.into()));
    }

    /// Appends a paragraph.
    pub fn para(&mut self, text: impl Into<String>) {
        self.push(Block::Para(text.into()));
    }

    /// The number the next table will have.
    pub fn next_table(&self) -> usize {
        self.tables + 1
    }

    /// Appends a table numbered in order; `caption` follows "Table N. ".
    pub fn push_table(&mut self, id: &str, caption: &str, header: &[&str], rows: Vec<Vec<String>>) {
        self.tables += 1;
        self.push(Block::Table(Table {
            id: id.into(),
            caption: format!("Table {}. {caption}", self.tables),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows,
        }));
    }

    /// Appends a figure numbered in order, or, without a picture, a note
    /// saying why it is missing (`missing`). Returns its number.
    pub fn push_figure(
        &mut self,
        id: &str,
        caption: &str,
        alt: &str,
        png: std::result::Result<Vec<u8>, String>,
    ) -> usize {
        self.figures += 1;
        let number = self.figures;
        self.push(match png {
            Ok(png) => Block::Figure(Figure {
                id: id.into(),
                caption: format!("Figure {number}. {caption}"),
                alt: alt.into(),
                png,
            }),
            Err(why) => {
                eprintln!("note: figure {number} ({id}) left out of the report: {why}");
                Block::Note(format!("Figure {number} ({alt}) is left out: {why}."))
            }
        });
        number
    }

    /// The figures, in order.
    pub fn figures(&self) -> impl Iterator<Item = &Figure> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Figure(f) => Some(f),
            _ => None,
        })
    }

    /// The self-contained HTML page.
    pub fn html(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<article>\n\
             <h1>{}</h1>\n<p class=\"byline\">{}</p>\n",
            esc(&self.title),
            esc(&self.title),
            esc(&self.byline)
        );
        for b in &self.blocks {
            match b {
                Block::Heading(level, t) => {
                    let _ = writeln!(s, "<h{level}>{}</h{level}>", esc(t));
                }
                Block::Para(t) => {
                    let _ = writeln!(s, "<p>{}</p>", esc(t));
                }
                Block::Note(t) => {
                    let _ = writeln!(s, "<p class=\"note\">{}</p>", esc(t));
                }
                Block::List(items) => {
                    s.push_str("<ul>\n");
                    for i in items {
                        let _ = writeln!(s, "<li>{}</li>", esc(i));
                    }
                    s.push_str("</ul>\n");
                }
                Block::Table(t) => {
                    let _ = write!(
                        s,
                        "<table id=\"{}\">\n<caption>{}</caption>\n<thead><tr>",
                        esc(&t.id),
                        esc(&t.caption)
                    );
                    for h in &t.header {
                        let _ = write!(s, "<th>{}</th>", esc(h));
                    }
                    s.push_str("</tr></thead>\n<tbody>\n");
                    for row in &t.rows {
                        s.push_str("<tr>");
                        for c in row {
                            let _ = write!(s, "<td>{}</td>", esc(c));
                        }
                        s.push_str("</tr>\n");
                    }
                    s.push_str("</tbody>\n</table>\n");
                }
                Block::Figure(f) => {
                    let _ = writeln!(
                        s,
                        "<figure id=\"{}\">\n<img src=\"data:image/png;base64,{}\" alt=\"{}\">\n\
                         <figcaption>{}</figcaption>\n</figure>",
                        esc(&f.id),
                        base64(&f.png),
                        esc(&f.alt),
                        esc(&f.caption)
                    );
                }
            }
        }
        s.push_str("</article>\n</body>\n</html>\n");
        s
    }

    /// The Markdown text; `file(figure)` names each figure's PNG file (as
    /// linked: a name beside the Markdown file).
    pub fn markdown(&self, file: impl Fn(&Figure) -> String) -> String {
        let mut s = format!("# {}\n\n*{}*\n\n", md(&self.title), md(&self.byline));
        for b in &self.blocks {
            match b {
                Block::Heading(level, t) => {
                    let _ = writeln!(s, "{} {}\n", "#".repeat(*level as usize), md(t));
                }
                Block::Para(t) => {
                    let _ = writeln!(s, "{}\n", md(t));
                }
                Block::Note(t) => {
                    let _ = writeln!(s, "> **Note.** {}\n", md(t));
                }
                Block::List(items) => {
                    for i in items {
                        let _ = writeln!(s, "- {}", md(i));
                    }
                    s.push('\n');
                }
                Block::Table(t) => {
                    let _ = writeln!(s, "**{}**\n", md(&t.caption));
                    let cells = |row: &[String]| {
                        let c: Vec<String> = row.iter().map(|c| md(c)).collect();
                        format!("| {} |", c.join(" | "))
                    };
                    let _ = writeln!(s, "{}", cells(&t.header));
                    let _ = writeln!(s, "|{}", " --- |".repeat(t.header.len()));
                    for row in &t.rows {
                        let _ = writeln!(s, "{}", cells(row));
                    }
                    s.push('\n');
                }
                Block::Figure(f) => {
                    let _ = writeln!(
                        s,
                        "![{}]({})\n\n*{}*\n",
                        md(&f.alt),
                        file(f),
                        md(&f.caption)
                    );
                }
            }
        }
        s
    }
}

/// The style sheet: readable on a screen, and on paper (A4, figures and
/// table rows kept whole, no background colours needed).
const STYLE: &str = "\
body { font-family: Georgia, 'DejaVu Serif', serif; line-height: 1.5; color: #111; background: #fff; margin: 0; }
article { max-width: 60rem; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.9rem; line-height: 1.25; margin-bottom: 0.3rem; }
h2 { font-size: 1.35rem; border-bottom: 1px solid #bbb; margin-top: 2rem; }
h3 { font-size: 1.1rem; }
.byline { color: #444; font-style: italic; margin-top: 0; }
.note { border-left: 4px solid #c60; padding: 0.4rem 0.8rem; background: #fff4e8; }
figure { margin: 1.5rem 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.92rem; color: #333; text-align: left; margin-top: 0.4rem; }
table { border-collapse: collapse; margin: 1.2rem auto; font-size: 0.9rem; }
caption { caption-side: top; text-align: left; font-size: 0.92rem; padding-bottom: 0.3rem; }
th, td { border-top: 1px solid #ccc; border-bottom: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: left; vertical-align: top; }
th { border-bottom: 2px solid #333; }
td { font-variant-numeric: tabular-nums; }
@page { size: A4; margin: 18mm 16mm; }
@media print {
  body { font-size: 10.5pt; }
  article { max-width: none; margin: 0; padding: 0; }
  h2, h3 { break-after: avoid; }
  figure, tr, .note { break-inside: avoid; }
  .note { background: none; }
  figure img { max-height: 22cm; }
}
";

/// `s` with HTML's special characters escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `s` with the characters Markdown would read as markup escaped by a
/// backslash (tables' `|` included), line breaks as spaces.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding), for the `data:` URIs.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648s_examples() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn text_cannot_become_markup() {
        let mut d = Document::new("a <b> & \"c\"".into(), "x_y".into());
        d.push_table("t", "cap|tion", &["k"], vec![vec!["a|b".into()]]);
        let html = d.html();
        assert!(
            html.contains("<h1>a &lt;b&gt; &amp; &quot;c&quot;</h1>"),
            "{html}"
        );
        let md = d.markdown(|_| String::new());
        assert!(md.contains("| a\\|b |"), "{md}");
        assert!(md.contains("*x\\_y*"), "{md}");
    }
}
