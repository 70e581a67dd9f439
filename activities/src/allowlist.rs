//! Host allowlists for URLs that come from payloads (webhooks, http inputs): an SSRF guard.

/// Rules are host names (`api.example.com`) or `*.example.com` for any subdomain; matching is
/// case-insensitive and ignores a trailing dot.
pub fn parse_rules(list: &str) -> Vec<String> {
    list.split(',')
        .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// Whether `url` names a host that `rules` allow.
pub fn allows(rules: &[String], url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed
        .host_str()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
    else {
        return false;
    };
    host_allowed(rules, &host)
}

pub fn host_allowed(rules: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    rules.iter().any(|rule| match rule.strip_prefix("*.") {
        Some(domain) => host.ends_with(&format!(".{domain}")),
        None => host == *rule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard() {
        let rules = parse_rules(" media.example.com, *.cdn.example.net ,");
        assert!(allows(&rules, "https://MEDIA.example.com./a.mp4"));
        assert!(allows(&rules, "https://eu.cdn.example.net/a.mp4"));
        assert!(!allows(&rules, "https://cdn.example.net/a.mp4"));
        assert!(!allows(&rules, "https://media.example.com.evil.org/a.mp4"));
        assert!(!allows(&rules, "http://169.254.169.254/latest/meta-data"));
        assert!(!allows(&rules, "not a url"));
    }
}
