//! Robots: what robots.txt lets the crawler fetch, and how slowly.
//!
//! This follows RFC 9309 (the Robots Exclusion Protocol) plus the
//! `Crawl-delay` extension most sites still use:
//!
//! * **Groups.** One or more `User-agent` lines start a group; the rules up
//!   to the next `User-agent` line belong to it. The crawler's product token
//!   (`haul` in `haul/0.1 (+url)`) is compared case-insensitively with each
//!   line's token, and every group that names it is merged; only when none
//!   does are the `*` groups used. Rules before any `User-agent` line are
//!   taken as a `*` group: the RFC leaves them undefined, and the polite
//!   reading is that they apply to everyone.
//! * **Rules.** `Allow` and `Disallow` patterns match a prefix of the path
//!   and query; `*` matches any run of characters and a final `$` anchors
//!   the end. The longest matching pattern (in octets) decides, `Allow` on a
//!   tie; no match means allowed. `/robots.txt` itself is always allowed.
//! * **Percent-encoding.** Patterns and paths are compared in one normal
//!   form: octets outside printable ASCII are percent-encoded, escapes of
//!   unreserved characters (`%41` for `A`) are decoded, other escapes keep
//!   their meaning with uppercase hex (`%2f` and `%2F` are one thing, `/` is
//!   another). A literal `*` or `$` in a path is compared as `%2A` or `%24`,
//!   which is how a pattern names one.
//! * **Crawl-delay** is seconds, possibly fractional, from the chosen
//!   groups (the first valid one).
//!
//! Hand-written rather than a crate: the candidates (`texting_robots`, last
//! released 2022, `robotstxt`) pull in regex, nom, bstr 0.2 or a second
//! thiserror for a task this small, and `texting_robots` compares whole
//! `User-agent` values, so `User-agent: haul/1.0` would not match `haul`.

use std::time::Duration;

/// RFC 9309 asks crawlers to read at least 500 KiB; reading no more bounds
/// the work a hostile file can cause.
const MAX_LEN: usize = 500 * 1024;

/// The rules of one robots.txt for one user agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Robots {
    rules: Vec<Rule>,
    delay: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    /// Normalized (see [`normalize`]); may hold `*` and a final `$`.
    pattern: String,
}

/// A group while parsing: the tokens of its `User-agent` lines (lowercase,
/// `*` for everyone) and its rules.
#[derive(Default)]
struct Group {
    agents: Vec<String>,
    rules: Vec<Rule>,
    delay: Option<Duration>,
}

impl Robots {
    /// Parses a robots.txt body for `user_agent` (a full User-Agent header
    /// value is fine: only its product token counts).
    ///
    /// Never fails: lines that are not `key: value` with a known key are
    /// ignored, as are comments (`#` to the end of the line). Only the first
    /// 500 KiB are read.
    #[must_use]
    pub fn parse(body: &str, user_agent: &str) -> Robots {
        let body = truncate(body.strip_prefix('\u{feff}').unwrap_or(body), MAX_LEN);
        let mut groups: Vec<Group> = Vec::new();
        // Whether the last record was a User-agent line, so that the next
        // one joins the same group instead of starting a new one.
        let mut in_agents = false;
        for line in body.split(['\n', '\r']) {
            let line = line.split('#').next().unwrap_or_default();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "user-agent" | "useragent" | "user agent" => {
                    if !in_agents {
                        groups.push(Group::default());
                        in_agents = true;
                    }
                    if let Some(group) = groups.last_mut() {
                        group.agents.push(token(value).to_ascii_lowercase());
                    }
                }
                key @ ("allow" | "disallow" | "dissallow" | "disalow" | "crawl-delay"
                | "crawldelay" | "crawl delay") => {
                    in_agents = false;
                    if groups.is_empty() {
                        groups.push(Group {
                            agents: vec!["*".to_owned()],
                            ..Group::default()
                        });
                    }
                    let Some(group) = groups.last_mut() else {
                        continue;
                    };
                    if key.starts_with("crawl") {
                        group.delay = group.delay.or_else(|| seconds(value));
                    } else if !value.is_empty() {
                        // An empty `Disallow:` disallows nothing, so it adds
                        // no rule; the same goes for an empty `Allow:`.
                        let mut pattern = normalize(value, true);
                        if !pattern.starts_with(['/', '*']) {
                            pattern.insert(0, '/');
                        }
                        group.rules.push(Rule {
                            allow: key == "allow",
                            pattern,
                        });
                    }
                }
                _ => {}
            }
        }

        let naming = |name: &str| -> Vec<&Group> {
            groups
                .iter()
                .filter(|group| group.agents.iter().any(|agent| agent == name))
                .collect()
        };
        let ours = token(user_agent).to_ascii_lowercase();
        let mut chosen = if ours.is_empty() || ours == "*" {
            Vec::new()
        } else {
            naming(&ours)
        };
        if chosen.is_empty() {
            chosen = naming("*");
        }
        Robots {
            rules: chosen
                .iter()
                .flat_map(|g| g.rules.iter().cloned())
                .collect(),
            delay: chosen.iter().find_map(|g| g.delay),
        }
    }

    /// No rules: everything may be fetched.
    ///
    /// RFC 9309 §2.3.1.3: when robots.txt is *unavailable*, a 4xx status
    /// (404, 410, and also 401 and 403), the crawler may fetch anything.
    /// Use this then. (When it is *unreachable*, a 5xx or a network error,
    /// the RFC asks for a complete disallow; there are no rules to hold
    /// then, and `schedule::robots` refuses the whole site itself, saying
    /// why.)
    #[must_use]
    pub fn allow_all() -> Robots {
        Robots {
            rules: Vec::new(),
            delay: None,
        }
    }

    /// Whether `path_and_query` (such as `/a/b.html?page=2`, as
    /// `&url[url::Position::BeforePath..]` gives it) may be fetched.
    ///
    /// A value that does not start with `/` is taken as if it did.
    #[must_use]
    pub fn allowed(&self, path_and_query: &str) -> bool {
        let mut path = normalize(path_and_query, false);
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if path == "/robots.txt" {
            return true;
        }
        self.rules
            .iter()
            .filter(|rule| matches(&rule.pattern, &path))
            .max_by_key(|rule| (rule.pattern.len(), rule.allow))
            .is_none_or(|rule| rule.allow)
    }

    /// The `Crawl-delay` for this agent, if the file gives one.
    #[must_use]
    pub fn crawl_delay(&self) -> Option<Duration> {
        self.delay
    }
}

/// The longest prefix of `s` (at a char boundary) of at most `max` bytes.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A product token: `*`, or the leading run of letters, `-` and `_`
/// (RFC 9309 §2.2.1), so `haul/0.1 (+https://…)` is `haul`.
fn token(agent: &str) -> &str {
    let agent = agent.trim();
    if agent.starts_with('*') {
        return "*";
    }
    let end = agent
        .find(|c: char| !(c.is_ascii_alphabetic() || c == '-' || c == '_'))
        .unwrap_or(agent.len());
    &agent[..end]
}

/// A `Crawl-delay` value in seconds, if it is one.
fn seconds(value: &str) -> Option<Duration> {
    let secs: f64 = value.parse().ok()?;
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

/// The one form in which patterns and paths are compared (see the module
/// docs). In a pattern (`pattern` true) `*` and `$` are wildcards and stay;
/// in a path they are literal characters and are escaped.
fn normalize(s: &str, pattern: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let escape = |out: &mut String, byte: u8| {
        out.push('%');
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xF)]));
    };
    let hex = |i: usize| {
        bytes
            .get(i)
            .and_then(|&c| char::from(c).to_digit(16))
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            if let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) {
                let decoded = (high << 4) | low;
                if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
                    out.push(char::from(decoded));
                } else {
                    escape(&mut out, decoded);
                }
                i += 3;
                continue;
            }
        }
        let literal_wildcard = !pattern && (byte == b'*' || byte == b'$');
        if byte <= b' ' || byte >= 0x7F || literal_wildcard {
            escape(&mut out, byte);
        } else {
            out.push(char::from(byte));
        }
        i += 1;
    }
    out
}

/// Whether `pattern` matches a prefix of `path` (all of it when the pattern
/// ends in `$`), with `*` matching any run.
///
/// The classic greedy wildcard match: on a mismatch, only the latest `*`
/// needs to take one more character, so it runs in O(pattern × path) at
/// worst and without recursion.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(pattern) => (pattern.as_bytes(), true),
        None => (pattern.as_bytes(), false),
    };
    let path = path.as_bytes();
    let (mut p, mut s) = (0, 0);
    // The position of the latest `*` and where in the path it stops.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p == pattern.len() {
            if !anchored || s == path.len() {
                return true;
            }
        } else if pattern[p] == b'*' {
            star = Some((p, s));
            p += 1;
            continue;
        } else if s < path.len() && pattern[p] == path[s] {
            p += 1;
            s += 1;
            continue;
        }
        match star {
            Some((star_p, star_s)) if star_s < path.len() => {
                star = Some((star_p, star_s + 1));
                p = star_p + 1;
                s = star_s + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    /// The example file of RFC 9309 §5.1.
    const RFC_EXAMPLE: &str = "\
User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot

EOF
";

    #[test]
    fn rfc_example_groups() {
        let star = Robots::parse(RFC_EXAMPLE, "haul/0.1 (+https://example.com)");
        assert!(!star.allowed("/example/page.html"));
        assert!(!star.allowed("/a/b.gif"));
        assert!(star.allowed("/a/b.gif?x"), "$ anchors the end");
        assert!(star.allowed("/publications/x.html"));
        assert!(
            star.allowed("/publications/x.gif"),
            "/publications/ is longer than *.gif$"
        );
        assert!(star.allowed("/"));

        let foobot = Robots::parse(RFC_EXAMPLE, "FooBot/2.1");
        assert!(foobot.allowed("/example/page.html"));
        assert!(foobot.allowed("/example/allowed.gif"));
        assert!(!foobot.allowed("/example/other.html"));
        assert!(!foobot.allowed("/"));
        assert!(foobot.allowed("/robots.txt"), "always allowed");

        for agent in ["barbot", "bazbot"] {
            let robots = Robots::parse(RFC_EXAMPLE, agent);
            assert!(!robots.allowed("/example/page.html"), "{agent}");
            assert!(
                robots.allowed("/example/other.html"),
                "{agent}: the * group does not apply"
            );
            assert!(robots.allowed("/a.gif"), "{agent}");
        }

        let quxbot = Robots::parse(RFC_EXAMPLE, "quxbot");
        assert!(
            quxbot.allowed("/example/page.html"),
            "an empty group allows all"
        );
    }

    #[test]
    fn longest_match_and_ties() {
        // RFC 9309 §2.2.2.
        let robots = Robots::parse(
            "User-Agent: foobot\nAllow: /example/page/\nDisallow: /example/page/disallowed.gif\n",
            "foobot",
        );
        assert!(robots.allowed("/example/page/"));
        assert!(robots.allowed("/example/page/allowed.gif"));
        assert!(!robots.allowed("/example/page/disallowed.gif"));

        let tie = Robots::parse("user-agent: *\ndisallow: /page\nallow: /page\n", "haul");
        assert!(tie.allowed("/page"), "allow wins a tie");
        let tie = Robots::parse("user-agent: *\nallow: /pag*\ndisallow: /page\n", "haul");
        assert!(
            tie.allowed("/page.html"),
            "length counts the pattern's octets"
        );
        let longer = Robots::parse("user-agent: *\nallow: /p\ndisallow: /page\n", "haul");
        assert!(!longer.allowed("/page.html"));
        assert!(longer.allowed("/pool"));
    }

    #[test]
    fn wildcards() {
        let robots = Robots::parse("user-agent: *\nallow: /$\ndisallow: /\n", "haul");
        assert!(robots.allowed("/"));
        assert!(!robots.allowed("/index.html"));
        let robots = Robots::parse(
            "user-agent: *\n\
             disallow: /this/path/exactly$\n\
             disallow: /*/private/*.jpg\n\
             disallow: /search*q=\n\
             disallow: /*.php$\n",
            "haul",
        );
        assert!(!robots.allowed("/this/path/exactly"));
        assert!(robots.allowed("/this/path/exactly/not"));
        assert!(robots.allowed("/this/path/exact"));
        assert!(!robots.allowed("/a/private/b/c.jpg"));
        assert!(!robots.allowed("/a/b/private/c.jpg?size=big"));
        assert!(robots.allowed("/private/c.jpg"));
        assert!(!robots.allowed("/search?lang=en&q=x"));
        assert!(robots.allowed("/search?lang=en"));
        assert!(!robots.allowed("/a/b.php"));
        assert!(robots.allowed("/a/b.php?x=1"));
        assert!(robots.allowed("/a/b.phpx"));
        assert!(
            matches("/*a*b*c$", "/xxaxxbxxbcc"),
            "backtracks past a false start"
        );
        assert!(!matches("/*a*b*c$", "/xxaxxbxxbcx"));
        assert!(matches("*", ""));
        assert!(matches("/a**", "/a"));
    }

    #[test]
    fn percent_encoding_is_normalized() {
        // RFC 9309 §2.2.2 and §2.2.3.
        let robots = Robots::parse(
            "user-agent: *\n\
             disallow: /foo/bar?baz=https://foo.bar\n\
             disallow: /foo/bar/ツ\n\
             disallow: /foo/%62%61%7A\n\
             disallow: /path/file-with-a-%2A.html\n\
             disallow: /path/foo-%24\n\
             disallow: /Caps%2f\n",
            "haul",
        );
        assert!(!robots.allowed("/foo/bar?baz=https://foo.bar"));
        assert!(
            robots.allowed("/foo/bar?baz=https%3A%2F%2Ffoo.bar"),
            "reserved escapes keep their meaning"
        );
        assert!(!robots.allowed("/foo/bar/%E3%83%84"));
        assert!(!robots.allowed("/foo/bar/%e3%83%84"));
        assert!(!robots.allowed("/foo/bar/ツ"));
        assert!(!robots.allowed("/foo/baz"));
        assert!(!robots.allowed("/foo/%62az"));
        assert!(!robots.allowed("/path/file-with-a-*.html"));
        assert!(!robots.allowed("/path/foo-$"));
        assert!(!robots.allowed("/Caps%2F"));
        assert!(robots.allowed("/Caps/"));
        assert!(robots.allowed("/caps%2F"), "paths are case-sensitive");
    }

    #[test]
    fn agent_selection_and_merging() {
        let body = "\
# comment line
User-agent: ExampleBot # trailing comment
Disallow: /foo
Disallow: /bar

User-agent: *
Disallow: /everyone

user-agent: examplebot/3.0
disallow: /baz
Sitemap: https://example.com/sitemap.xml
disallow: /qux
";
        let robots = Robots::parse(body, "ExampleBot/1.2 (+https://example.com/bot)");
        for path in ["/foo", "/bar", "/baz", "/qux"] {
            assert!(
                !robots.allowed(path),
                "{path}: groups naming the agent merge"
            );
        }
        assert!(robots.allowed("/everyone"));
        let other = Robots::parse(body, "haul/0.1");
        assert!(!other.allowed("/everyone"));
        assert!(other.allowed("/foo"));
        let nobody = Robots::parse(body, "");
        assert!(!nobody.allowed("/everyone"));
        // A token is letters, `-` and `_`: "example" is not "examplebot".
        assert!(Robots::parse(body, "example").allowed("/foo"));
    }

    #[test]
    fn rules_before_any_agent_and_oddities() {
        let robots = Robots::parse("Disallow: /private\r\nCrawl-delay: 2\r\n", "haul");
        assert!(!robots.allowed("/private/x"));
        assert_eq!(robots.crawl_delay(), Some(Duration::from_secs(2)));

        let robots = Robots::parse(
            "\u{feff}USER-AGENT:*\rDISALLOW:private\rdisallow:\rallow:\rnonsense\rfoo: bar\r",
            "haul",
        );
        assert!(!robots.allowed("/private"), "a pattern without / gets one");
        assert!(robots.allowed("/public"));
        assert!(!robots.allowed("private/x"), "a path without / gets one");

        assert!(Robots::parse("", "haul").allowed("/anything"));
        assert!(Robots::parse("User-agent: *\nDisallow:\n", "haul").allowed("/anything"));
    }

    #[test]
    fn crawl_delay() {
        let body = "\
User-agent: *
Crawl-delay: 10

User-agent: haul
Crawl-delay: 0.5
Crawl-delay: 7
Disallow: /x
";
        assert_eq!(
            Robots::parse(body, "haul").crawl_delay(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            Robots::parse(body, "other").crawl_delay(),
            Some(Duration::from_secs(10))
        );
        for bad in ["-1", "soon", "NaN", "inf", "1e400", ""] {
            let robots = Robots::parse(&format!("User-agent: *\nCrawl-delay: {bad}\n"), "haul");
            assert_eq!(robots.crawl_delay(), None, "{bad}");
        }
        let robots = Robots::parse("User-agent: *\ncrawl-delay: nope\ncrawl-delay: 3\n", "haul");
        assert_eq!(robots.crawl_delay(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn allow_all_and_disallow_all() {
        assert!(Robots::allow_all().allowed("/a"));
        assert_eq!(Robots::allow_all().crawl_delay(), None);
        let none = Robots::parse("User-agent: *\nDisallow: /\n", "haul");
        for path in ["/", "/a", "", "?q=1", "/robots.txx"] {
            assert!(!none.allowed(path), "{path}");
        }
        assert!(none.allowed("/robots.txt"));
    }

    #[test]
    fn huge_files_are_cut_at_500_kib() {
        let mut body = "User-agent: *\n".to_owned();
        body.push_str(&"# padding é\n".repeat(MAX_LEN / 10));
        body.push_str("Disallow: /late\n");
        assert!(Robots::parse(&body, "haul").allowed("/late"));
        assert_eq!(truncate("aé", 2), "a");
    }

    proptest! {
        #[test]
        fn never_panics(
            body in "(?s)((user-agent|allow|disallow|crawl-delay|[^:\n]{0,8}):? ?[ -~ツé*$%/\n\r]{0,40}){0,8}",
            path in "[ -~ツé]{0,20}",
        ) {
            let robots = Robots::parse(&body, "haul");
            let _ = robots.allowed(&path);
            let _ = robots.crawl_delay();
        }

        #[test]
        fn normal_form_is_stable(s in "[ -~ツé]{0,30}") {
            let once = normalize(&s, true);
            prop_assert_eq!(normalize(&once, true), once.clone());
            prop_assert!(once.is_ascii());
        }
    }
}
