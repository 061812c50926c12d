//! The access-log line parser: Common Log Format, optionally followed by the Combined format's
//! referer and user agent.
//!
//! `%h %l %u %t "%r" %>s %b ["%{Referer}i" "%{User-agent}i"]` — fields separated by one space, the
//! time in brackets (`10/Oct/2026:13:55:36 -0700`), quoted fields with `\"` and `\\` escaped (as Apache
//! writes them).

use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Why a line is not an access-log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// One parsed line. `None` stands for Apache's `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogLine {
    /// `%h`: the client's address (or host name).
    pub remote_host: String,
    /// `%l`: the identd answer (almost always `-`).
    pub ident: Option<String>,
    /// `%u`: the authenticated user.
    pub user: Option<String>,
    /// `%t`: when the request was received, with the server's offset.
    pub time: DateTime<FixedOffset>,
    /// `%r`: the request line as sent.
    pub request: String,
    /// `%>s`: the final status.
    pub status: u16,
    /// `%b`: response body bytes (`-` for none).
    pub bytes: Option<u64>,
    /// The Combined format's referer and user agent, if the line has them.
    pub combined: Option<(Option<String>, Option<String>)>,
}

impl AccessLogLine {
    /// The JSON document of the line (see the crate documentation for its fields).
    pub fn to_json(&self) -> Value {
        let mut parts = self.request.splitn(3, ' ');
        let (method, path, protocol) = match (parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(p), Some(v)) if v.starts_with("HTTP/") => (Some(m), Some(p), Some(v)),
            _ => (None, None, None),
        };
        let mut doc = json!({
            "remote_host": self.remote_host,
            "ident": self.ident,
            "user": self.user,
            "time": self.time.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true),
            "method": method,
            "path": path,
            "protocol": protocol,
            "request": self.request,
            "status": self.status,
            "bytes": self.bytes,
        });
        if let (Some((referer, agent)), Some(map)) = (&self.combined, doc.as_object_mut()) {
            map.insert("referer".into(), json!(referer));
            map.insert("user_agent".into(), json!(agent));
        }
        doc
    }
}

/// A cursor over a line.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn fail<T>(&self, what: &str) -> Result<T, ParseError> {
        let near: String = self.rest.chars().take(20).collect();
        Err(ParseError(format!("expected {what} at {near:?}")))
    }

    fn space(&mut self) -> Result<(), ParseError> {
        match self.rest.strip_prefix(' ') {
            Some(r) => {
                self.rest = r;
                Ok(())
            }
            None => self.fail("a space"),
        }
    }

    fn word(&mut self, what: &str) -> Result<&'a str, ParseError> {
        let end = self.rest.find(' ').unwrap_or(self.rest.len());
        if end == 0 {
            return self.fail(what);
        }
        let (w, r) = self.rest.split_at(end);
        self.rest = r;
        Ok(w)
    }

    fn bracketed(&mut self, what: &str) -> Result<&'a str, ParseError> {
        let Some(inner) = self.rest.strip_prefix('[') else {
            return self.fail(what);
        };
        let Some(end) = inner.find(']') else {
            return self.fail(what);
        };
        self.rest = &inner[end + 1..];
        Ok(&inner[..end])
    }

    fn quoted(&mut self, what: &str) -> Result<String, ParseError> {
        let Some(inner) = self.rest.strip_prefix('"') else {
            return self.fail(what);
        };
        let mut out = String::new();
        let mut chars = inner.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &inner[i + 1..];
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    Some((_, e)) => {
                        out.push('\\');
                        out.push(e);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        self.fail(&format!("the closing quote of {what}"))
    }
}

fn dash(s: &str) -> Option<String> {
    (s != "-").then(|| s.to_owned())
}

/// Parses one line; see the module documentation.
pub fn parse_line(line: &str) -> Result<AccessLogLine, ParseError> {
    let mut c = Cursor {
        rest: line.trim_end_matches(['\r', '\n']),
    };
    let remote_host = c.word("the client address")?.to_owned();
    c.space()?;
    let ident = dash(c.word("the ident field")?);
    c.space()?;
    let user = dash(c.word("the user field")?);
    c.space()?;
    let time_text = c.bracketed("the [time]")?;
    let time = DateTime::parse_from_str(time_text, "%d/%b/%Y:%H:%M:%S %z")
        .map_err(|e| ParseError(format!("invalid time {time_text:?}: {e}")))?;
    c.space()?;
    let request = c.quoted("the \"request\"")?;
    c.space()?;
    let status_text = c.word("the status")?;
    let status = status_text
        .parse::<u16>()
        .ok()
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| ParseError(format!("invalid status {status_text:?}")))?;
    c.space()?;
    let bytes_text = c.word("the size")?;
    let bytes = match bytes_text {
        "-" => None,
        b => Some(
            b.parse::<u64>()
                .map_err(|_| ParseError(format!("invalid size {b:?}")))?,
        ),
    };
    let combined = if c.rest.is_empty() {
        None
    } else {
        c.space()?;
        let referer = c.quoted("the \"referer\"")?;
        c.space()?;
        let agent = c.quoted("the \"user agent\"")?;
        Some((dash(&referer), dash(&agent)))
    };
    if !c.rest.is_empty() {
        return c.fail("the end of the line");
    }
    Ok(AccessLogLine {
        remote_host,
        ident,
        user,
        time,
        request,
        status,
        bytes,
        combined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_combined_line_becomes_the_documented_document() {
        let line = r#"203.0.113.9 - alice [10/Oct/2026:13:55:36 -0700] "GET /shop?id=7 HTTP/1.1" 200 2326 "https://example.com/" "Mozilla/5.0""#;
        let doc = parse_line(line).unwrap().to_json();
        assert_eq!(
            doc,
            json!({"remote_host":"203.0.113.9","ident":null,"user":"alice","time":"2026-10-10T20:55:36Z",
                   "method":"GET","path":"/shop?id=7","protocol":"HTTP/1.1","request":"GET /shop?id=7 HTTP/1.1",
                   "status":200,"bytes":2326,"referer":"https://example.com/","user_agent":"Mozilla/5.0"})
        );
    }

    #[test]
    fn common_format_dashes_and_escapes() {
        let doc = parse_line(r#"::1 - - [01/Jan/2026:00:00:00 +0000] "-" 408 -"#)
            .unwrap()
            .to_json();
        assert_eq!(doc["method"], Value::Null, "no request line");
        assert_eq!(doc["request"], "-");
        assert_eq!(doc["bytes"], Value::Null);
        assert!(doc.get("referer").is_none(), "common format has no referer");
        let doc = parse_line(
            r#"h - - [01/Jan/2026:00:00:00 +0000] "GET /a\"b HTTP/1.0" 404 0 "-" "curl \\ \"x\"""#,
        )
        .unwrap()
        .to_json();
        assert_eq!(doc["path"], "/a\"b");
        assert_eq!(doc["referer"], Value::Null);
        assert_eq!(doc["user_agent"], "curl \\ \"x\"");
        // CRLF line ends are tolerated.
        assert!(
            parse_line("h - - [01/Jan/2026:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1\r").is_ok()
        );
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let err = |l: &str| parse_line(l).unwrap_err().to_string();
        assert!(err("").contains("client address"));
        assert!(err("h - - 01/Jan/2026 \"GET /\" 200 1").contains("[time]"));
        assert!(err("h - - [32/Jan/2026:00:00:00 +0000] \"G\" 200 1").contains("invalid time"));
        assert!(err("h - - [01/Jan/2026:00:00:00 +0000] \"GET / 200 1").contains("closing quote"));
        assert!(err("h - - [01/Jan/2026:00:00:00 +0000] \"G\" abc 1").contains("invalid status"));
        assert!(err("h - - [01/Jan/2026:00:00:00 +0000] \"G\" 200 x").contains("invalid size"));
        assert!(
            err("h - - [01/Jan/2026:00:00:00 +0000] \"G\" 200 1 \"r\" \"a\" extra")
                .contains("end of the line")
        );
    }
}
