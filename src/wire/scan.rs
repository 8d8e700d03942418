//! The fast path of [`super::parse`]: one pass over a frame's bytes that validates the JSON
//! structure and locates the top-level keys of a data push, without building any value.
//!
//! It is conservative: it answers only for plain data pushes (a top-level object whose `topic`
//! and `type` carry no escapes, integer `ts` / `creationTime`, a `data` value, no control-frame
//! keys, no escaped keys, nesting below [`MAX_DEPTH`]). Anything else (control frames,
//! malformed text, the unusual shapes) returns [`Scan::Other`] and the caller decides with
//! serde, so both paths agree on every input.

use std::ops::Range;

mod swar;

use swar::{non_digits, small_digits_value, specials_exact, word_at};

/// Containers deeper than this send the frame to the serde path.
const MAX_DEPTH: u32 = 128;

/// What the scanner found.
#[derive(Debug)]
pub(super) enum Scan {
    /// A plain data push.
    Data(Located),
    /// Anything else: ask serde.
    Other,
}

/// Byte ranges and numbers of a plain data push.
#[derive(Debug, Default)]
pub(super) struct Located {
    /// `topic`'s characters (inside the quotes).
    pub topic: Range<usize>,
    /// `type`'s characters, when a string.
    pub kind: Option<Range<usize>>,
    /// `ts`.
    pub ts: Option<i64>,
    /// `creationTime`.
    pub creation_time: Option<i64>,
    /// The `data` value, as sent.
    pub data: Range<usize>,
    /// `data.u` when `data` is an object with one unsigned integer `u`.
    pub u: Option<u64>,
    /// The top-level `id`'s characters, when a string (private frames, option pushes).
    pub id: Option<Range<usize>>,
    /// The top-level `cs` (tickers' cross sequence).
    pub cs: Option<i64>,
    /// When `data` is an array whose first item is an object: that item's `i`'s characters,
    /// when a string (publicTrade's trade id).
    pub first_i: Option<Range<usize>>,
    /// The same item's `start` (kline's start time).
    pub first_start: Option<i64>,
}

/// What the scan located in the first item of an array `data`.
#[derive(Debug, Default)]
struct FirstItem {
    i: Option<Range<usize>>,
    start: Option<i64>,
}

/// Not a plain data push (or not JSON): the caller asks serde.
struct Bail;

type Step<T = ()> = Result<T, Bail>;

/// Bytes that may appear unescaped inside a string and need no attention.
const fn plain_table() -> [bool; 256] {
    let mut t = [true; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = false;
        i += 1;
    }
    t[b'"' as usize] = false;
    t[b'\\' as usize] = false;
    t
}
static PLAIN: [bool; 256] = plain_table();

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    /// Where the word of the last string skip was read (`usize::MAX`: none yet).
    word_at: usize,
    /// That word's [`specials_exact`] mask: a string that starts inside the word (a value
    /// after its short key, the next short key after a short value) finds its end from the mask,
    /// without reading the text again.
    word_specials: u64,
}

impl Cursor<'_> {
    #[inline]
    fn peek(&self) -> Step<u8> {
        self.b.get(self.i).copied().ok_or(Bail)
    }

    #[inline(always)]
    fn ws(&mut self) {
        // Bybit sends no whitespace: one look settles it.
        if self.b.get(self.i).is_some_and(|&c| c > b' ') {
            return;
        }
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Step {
        if self.peek()? != c {
            return Err(Bail);
        }
        self.i += 1;
        Ok(())
    }

    /// At an opening quote: skips the string, validating escapes and control characters.
    /// Returns the characters' range and whether any escape occurred.
    #[inline(always)]
    fn string(&mut self) -> Step<(Range<usize>, bool)> {
        let start = self.i + 1;
        let escaped = self.skip_string()?;
        // `skip_string` leaves the cursor after the closing quote.
        Ok((start..self.i - 1, escaped))
    }

    /// At an opening quote: skips the string (cursor after the closing quote); returns whether
    /// any escape occurred. Plain strings (nearly all of Bybit's) take the tight loop.
    #[inline(always)]
    fn skip_string(&mut self) -> Step<bool> {
        let b = self.b;
        if b.get(self.i) != Some(&b'"') {
            return Err(Bail);
        }
        let mut i = self.i + 1;
        // The rest of the word read last, when the string starts inside it.
        if let Some(offset) = i.checked_sub(self.word_at)
            && offset < 8
        {
            let hit = self.word_specials >> (offset * 8);
            if hit != 0 {
                i += (hit.trailing_zeros() / 8) as usize;
                if b.get(i) == Some(&b'"') {
                    self.i = i + 1;
                    return Ok(false);
                }
                return self.string_from(i);
            }
            i = self.word_at + 8;
        }
        // Eight bytes at a time, then byte by byte to the first special byte.
        while let Some(word) = word_at(b, i) {
            let hit = specials_exact(word);
            if hit != 0 {
                self.word_at = i;
                self.word_specials = hit;
                i += (hit.trailing_zeros() / 8) as usize;
                if b[i] == b'"' {
                    self.i = i + 1;
                    return Ok(false);
                }
                break;
            }
            i += 8;
        }
        self.string_from(i)
    }

    /// The rest of a string from `i` on, byte by byte; cursor after the closing quote.
    #[inline(always)]
    fn string_from(&mut self, mut i: usize) -> Step<bool> {
        let b = self.b;
        while i < b.len() && PLAIN[b[i] as usize] {
            i += 1;
        }
        if i < b.len() && b[i] == b'"' {
            self.i = i + 1;
            return Ok(false);
        }
        self.i = i;
        self.string_tail()
    }

    /// The rest of a string from a byte that is not plain (an escape, a control character or
    /// the end of the text); cursor after the closing quote.
    #[cold]
    #[inline(never)]
    fn string_tail(&mut self) -> Step<bool> {
        let mut escaped = false;
        loop {
            while let Some(&c) = self.b.get(self.i) {
                if !PLAIN[c as usize] {
                    break;
                }
                self.i += 1;
            }
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5).ok_or(Bail)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Bail);
                            }
                            self.i += 5;
                        }
                        _ => return Err(Bail),
                    }
                }
                // A control character.
                _ => return Err(Bail),
            }
        }
    }

    /// Skips a run of ASCII digits, eight at a time ([`non_digits`]); returns its length.
    #[inline(always)]
    fn digits(&mut self) -> usize {
        let start = self.i;
        let b = self.b;
        let mut i = start;
        while let Some(word) = word_at(b, i) {
            let hit = non_digits(word);
            if hit != 0 {
                i += (hit.trailing_zeros() / 8) as usize;
                self.i = i;
                return i - start;
            }
            i += 8;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        self.i = i;
        i - start
    }

    /// Skips a number; returns whether it was a plain integer (no fraction, no exponent).
    #[inline(always)]
    fn number(&mut self) -> Step<bool> {
        if self.peek()? == b'-' {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                    return Err(Bail);
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return Err(Bail),
        }
        let mut integer = true;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Bail);
            }
            integer = false;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Bail);
            }
            integer = false;
        }
        Ok(integer)
    }

    /// `true`, `false` or `null` at the cursor (a fixed-size compare, no `memcmp` call).
    #[inline(always)]
    fn literal<const N: usize>(&mut self, word: &[u8; N]) -> Step {
        if self.b.get(self.i..self.i + N) != Some(word.as_slice()) {
            return Err(Bail);
        }
        self.i += N;
        Ok(())
    }

    /// A scalar (not a container) at the cursor.
    #[inline(always)]
    fn scalar(&mut self) -> Step {
        match self.peek()? {
            b'"' => self.skip_string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            _ => Err(Bail),
        }
    }

    /// An object key and its colon; the cursor ends at the value.
    #[inline(always)]
    fn key(&mut self) -> Step<(Range<usize>, bool)> {
        let key = self.string()?;
        self.ws();
        self.expect(b':')?;
        self.ws();
        Ok(key)
    }

    /// Skips an object key and its colon; the cursor ends at the value.
    #[inline(always)]
    fn skip_key(&mut self) -> Step {
        self.skip_string()?;
        self.ws();
        self.expect(b':')?;
        self.ws();
        Ok(())
    }

    /// Skips any value: a scalar here (most values of a data item), a container in
    /// [`Self::value`]; `depth` is the nesting already open around it.
    #[inline(always)]
    fn any(&mut self, depth: u32) -> Step {
        match self.peek()? {
            b'{' | b'[' => self.value(depth),
            _ => self.scalar(),
        }
    }

    /// Skips any value, iteratively; `depth` is the nesting already open around it.
    fn value(&mut self, depth: u32) -> Step {
        // One bit per open container: 1 for an object, 0 for an array.
        let mut stack: u128 = 0;
        let mut open: u32 = 0;
        loop {
            match self.peek()? {
                c @ (b'{' | b'[') => {
                    if depth + open + 1 >= MAX_DEPTH {
                        return Err(Bail);
                    }
                    self.i += 1;
                    self.ws();
                    let object = c == b'{';
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.i += 1;
                    } else {
                        stack = (stack << 1) | u128::from(object);
                        open += 1;
                        if object {
                            self.skip_key()?;
                        }
                        continue;
                    }
                }
                _ => self.scalar()?,
            }
            // After a value: commas and closers.
            loop {
                if open == 0 {
                    return Ok(());
                }
                self.ws();
                let object = stack & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                        if object {
                            self.skip_key()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return Err(Bail),
                }
                self.i += 1;
                stack >>= 1;
                open -= 1;
            }
        }
    }

    /// A string's range (an escaped one bails: serde decides), or `None` after skipping any
    /// other value at `depth`.
    #[inline(always)]
    fn unescaped_string_or_skip(&mut self, depth: u32) -> Step<Option<Range<usize>>> {
        if self.peek()? != b'"' {
            self.any(depth)?;
            return Ok(None);
        }
        let (range, escaped) = self.string()?;
        if escaped {
            return Err(Bail);
        }
        Ok(Some(range))
    }

    /// An `i64` or `null`; anything else bails (serde decides).
    fn int_or_null(&mut self) -> Step<Option<i64>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Ok(None);
        }
        let start = self.i;
        // serde_json reads `-0` as a float (it keeps the sign).
        if !self.number()? || self.b[start..].starts_with(b"-0") {
            return Err(Bail);
        }
        // Digits only (no fraction or exponent), at most one leading `-`.
        let text = &self.b[start..self.i];
        let (negative, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        let v = if digits.len() <= 18 {
            // Below 10^18: no overflow possible, no checks per digit (a 13-digit `ts`).
            small_digits_value(digits)
        } else {
            digits
                .iter()
                .try_fold(0u64, |v, &d| {
                    v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                })
                .ok_or(Bail)?
        };
        let v = if negative {
            0i64.checked_sub_unsigned(v)
        } else {
            i64::try_from(v).ok()
        };
        v.map(Some).ok_or(Bail)
    }

    /// The `data` value; when it is an object, its one unsigned integer `u` (as serde would read
    /// `{"u": u64}`: absent, repeated or of another type gives `None`).
    fn data(&mut self) -> Step<(Range<usize>, Option<u64>, FirstItem)> {
        let start = self.i;
        if self.peek()? != b'{' {
            let first = if self.peek()? == b'[' {
                self.array_data()?
            } else {
                self.value(1)?;
                FirstItem::default()
            };
            // serde reads a struct from an array too: `[u]`.
            let u = self.b[start..self.i]
                .strip_prefix(b"[")
                .and_then(|v| v.strip_suffix(b"]"))
                .map(|v| v.trim_ascii())
                .filter(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit))
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
            return Ok((start..self.i, u, first));
        }
        self.i += 1;
        self.ws();
        let mut u: Option<Option<u64>> = None;
        let mut valid = true;
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok((start..self.i, None, FirstItem::default()));
        }
        loop {
            let (key, escaped) = self.key()?;
            if escaped {
                // serde would unescape the key (it might spell `u`).
                return Err(Bail);
            }
            if &self.b[key] == b"u" {
                let vstart = self.i;
                let integer = self.peek()? != b'-' && self.number().unwrap_or(false);
                if !integer {
                    self.i = vstart;
                    self.any(2)?;
                }
                let parsed = integer
                    .then(|| digits_u64(&self.b[vstart..self.i]))
                    .flatten();
                if u.is_some() || parsed.is_none() {
                    valid = false;
                }
                u = Some(parsed);
            } else {
                self.any(2)?;
            }
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return Err(Bail),
            }
        }
        Ok((
            start..self.i,
            u.flatten().filter(|_| valid),
            FirstItem::default(),
        ))
    }

    /// At the `[` of an array `data`: skips it (cursor after the `]`), locating `i` and `start`
    /// in its first item when that is an object. The same nesting limits as [`Self::value`]`(1)`.
    fn array_data(&mut self) -> Step<FirstItem> {
        self.i += 1;
        self.ws();
        let mut first = FirstItem::default();
        match self.peek()? {
            b']' => {
                self.i += 1;
                return Ok(first);
            }
            b'{' => first = self.first_item()?,
            _ => self.any(2)?,
        }
        loop {
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                    self.any(2)?;
                }
                b']' => {
                    self.i += 1;
                    return Ok(first);
                }
                _ => return Err(Bail),
            }
        }
    }

    /// At the `{` of the first item of an array `data`: skips it, locating a string `i` and an
    /// integer `start` (a repeated or escaped key, an escaped `i` or a `start` that is not an
    /// integer or null: serde decides).
    fn first_item(&mut self) -> Step<FirstItem> {
        self.i += 1;
        self.ws();
        let mut out = FirstItem::default();
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(out);
        }
        let (mut seen_i, mut seen_start) = (false, false);
        loop {
            let (key, escaped) = self.key()?;
            if escaped {
                return Err(Bail);
            }
            match &self.b[key] {
                b"i" => {
                    if std::mem::replace(&mut seen_i, true) {
                        return Err(Bail);
                    }
                    if let Some(range) = self.unescaped_string_or_skip(3)? {
                        out.i = Some(range);
                    }
                }
                b"start" => {
                    if std::mem::replace(&mut seen_start, true) {
                        return Err(Bail);
                    }
                    out.start = self.int_or_null()?;
                }
                _ => self.any(3)?,
            }
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => return Err(Bail),
            }
        }
    }
}

/// The value of ASCII digits (as `str::parse::<u64>` reads them), `None` past `u64::MAX`.
#[inline]
fn digits_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() <= 19 {
        // Below 10^19: no overflow possible.
        return Some(small_digits_value(digits));
    }
    digits.iter().try_fold(0u64, |v, &d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Scans one frame.
pub(super) fn scan(text: &str) -> Scan {
    match scan_object(text.as_bytes()) {
        Ok(Some(located)) => Scan::Data(located),
        Ok(None) | Err(Bail) => Scan::Other,
    }
}

/// `Ok(None)`: valid JSON but not a plain data push.
fn scan_object(b: &[u8]) -> Step<Option<Located>> {
    let mut c = Cursor {
        b,
        i: 0,
        word_at: usize::MAX,
        word_specials: 0,
    };
    c.ws();
    c.expect(b'{')?;
    c.ws();
    let mut out = Located::default();
    let (mut topic, mut kind, mut ts, mut created, mut data) = (false, false, false, false, false);
    let (mut id, mut cs) = (false, false);
    if c.peek()? == b'}' {
        return Ok(None);
    }
    loop {
        let (key, escaped) = c.key()?;
        if escaped {
            return Err(Bail);
        }
        match &b[key] {
            b"topic" => {
                if std::mem::replace(&mut topic, true) || c.peek()? != b'"' {
                    return Err(Bail);
                }
                let (range, escaped) = c.string()?;
                if escaped {
                    return Err(Bail);
                }
                out.topic = range;
            }
            b"type" => {
                if std::mem::replace(&mut kind, true) {
                    return Err(Bail);
                }
                match c.peek()? {
                    b'"' => {
                        let (range, escaped) = c.string()?;
                        if escaped {
                            return Err(Bail);
                        }
                        out.kind = Some(range);
                    }
                    b'n' => c.literal(b"null")?,
                    _ => return Err(Bail),
                }
            }
            b"ts" => {
                if std::mem::replace(&mut ts, true) {
                    return Err(Bail);
                }
                out.ts = c.int_or_null()?;
            }
            b"creationTime" => {
                if std::mem::replace(&mut created, true) {
                    return Err(Bail);
                }
                out.creation_time = c.int_or_null()?;
            }
            b"data" => {
                if std::mem::replace(&mut data, true) {
                    return Err(Bail);
                }
                let first;
                (out.data, out.u, first) = c.data()?;
                (out.first_i, out.first_start) = (first.i, first.start);
            }
            b"id" => {
                if std::mem::replace(&mut id, true) {
                    return Err(Bail);
                }
                if let Some(range) = c.unescaped_string_or_skip(1)? {
                    out.id = Some(range);
                }
            }
            b"cs" => {
                if std::mem::replace(&mut cs, true) {
                    return Err(Bail);
                }
                out.cs = c.int_or_null()?;
            }
            // Keys of control frames: serde reads them.
            b"op" | b"success" | b"ret_msg" | b"req_id" => return Err(Bail),
            _ => c.any(1)?,
        }
        c.ws();
        match c.peek()? {
            b',' => {
                c.i += 1;
                c.ws();
            }
            b'}' => {
                c.i += 1;
                break;
            }
            _ => return Err(Bail),
        }
    }
    c.ws();
    if c.i != b.len() {
        return Err(Bail);
    }
    Ok((topic && data).then_some(out))
}
