//! Is a byte stream nothing but well-formed HTTP/1.x responses?
//!
//! Responses are walked one by one: the head must parse (httparse: a
//! status line `HTTP/1.x NNN reason`, then header lines), the status must
//! be 100–599, and the body must be framed by its `Content-Length`, by the
//! chunked coding, or by the end of the stream. A response to `HEAD` has
//! framing headers but no body, and the checker does not know which
//! requests were `HEAD`s, so when a declared body does not leave the rest
//! of the stream starting with another response, "no body" is tried too.

const MAX_HEADERS: usize = 128;

pub fn responses(mut buf: &[u8]) -> Result<(), String> {
    let mut n = 0;
    while !buf.is_empty() {
        buf = one(buf).map_err(|e| format!("response {n}: {e}"))?;
        n += 1;
    }
    Ok(())
}

enum Framing {
    None,
    Length(usize),
    Chunked,
    Close,
}

/// One response; returns what follows it.
fn one(buf: &[u8]) -> Result<&[u8], String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("truncated head".into()),
        Err(e) => return Err(format!("bad head: {e}")),
    };
    let code = resp.code.ok_or("no status code")?;
    if !(100..=599).contains(&code) {
        return Err(format!("status {code} out of range"));
    }
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).map_err(|_| "non-ASCII Content-Length")?;
            let v: usize = v
                .trim()
                .parse()
                .map_err(|_| format!("Content-Length {v:?}"))?;
            if length.is_some_and(|l| l != v) {
                return Err("conflicting Content-Length".into());
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h.value.eq_ignore_ascii_case(b"chunked");
            if !chunked {
                return Err(format!("Transfer-Encoding {:?}", h.value));
            }
        }
    }
    if chunked && length.is_some() {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    let framing = match (code, length, chunked) {
        (100..=199 | 204 | 304, _, _) => Framing::None,
        (_, Some(n), _) => Framing::Length(n),
        (_, None, true) => Framing::Chunked,
        (_, None, false) => Framing::Close,
    };
    let rest = &buf[head_len..];
    let after_body = match framing {
        Framing::None => Some(rest),
        Framing::Close => Some(&rest[rest.len()..]),
        Framing::Length(n) => rest.get(n..),
        Framing::Chunked => chunked_body(rest),
    };
    match after_body {
        Some(next) if next.is_empty() || next.starts_with(b"HTTP/") => Ok(next),
        // A HEAD response: framing headers, no body.
        _ if rest.is_empty() || rest.starts_with(b"HTTP/") => Ok(rest),
        _ => Err("body does not match its framing".into()),
    }
}

/// Skips a chunked body (sizes, extensions, data, trailers).
fn chunked_body(mut buf: &[u8]) -> Option<&[u8]> {
    loop {
        let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&buf[..line_end]).ok()?;
        let size = line.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        buf = &buf[line_end + 2..];
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let end = buf.windows(2).position(|w| w == b"\r\n")?;
                buf = &buf[end + 2..];
                if end == 0 {
                    return Some(buf);
                }
            }
        }
        let data = buf.get(..size)?;
        buf = buf[data.len()..].strip_prefix(b"\r\n")?;
    }
}
